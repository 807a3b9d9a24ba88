package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// transfer sends one file over its own connected socket.
type transfer struct {
	conn *net.UDPConn
	file io.ReaderAt
	size int64
	p    params
	sent int64 // bytes the client acknowledged
}

// run sends the OACK when options were negotiated, then the file a window at a time. The
// client's ACK of a window's last block brings the next window; an ACK of an earlier block
// (RFC 7440: the client lost what followed) restarts the window after it; a duplicate ACK is
// ignored, so that delayed ACKs do not double the traffic (the Sorcerer's Apprentice); a
// timeout sends the window again, at most retries times.
func (t *transfer) run() error {
	bs := int64(t.p.blockSize)
	last := t.size/bs + 1 // blocks to send; the last one is shorter than bs, maybe empty
	out := make([]byte, 4+bs)
	in := make([]byte, 516)
	oack := len(t.p.oack) > 0
	var acked int64 // the last block the client acknowledged: 0 is the OACK
	var deadline time.Time
	tries := 0
	for acked < last {
		end := min(acked+int64(t.p.windowSize), last)
		if oack {
			if _, err := t.conn.Write(appendOACK(out, t.p.oack)); err != nil {
				return fmt.Errorf("sending OACK: %w", err)
			}
		} else {
			for b := acked + 1; b <= end; b++ {
				if err := t.send(out, b, bs); err != nil {
					return err
				}
			}
		}
		// The read deadline moves only when it is an eighth of the timeout behind: setting it
		// for every block costs more than the rest of the block's work, and a window waits
		// between 7/8 and all of the timeout before it is sent again.
		if now := time.Now(); now.Add(t.p.timeout).Sub(deadline) > t.p.timeout/8 {
			deadline = now.Add(t.p.timeout)
			if err := t.conn.SetReadDeadline(deadline); err != nil {
				return err
			}
		}
		for {
			n, err := t.conn.Read(in)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if tries++; tries > retries {
					return fmt.Errorf("no acknowledgement of block %d after %d tries of %s", acked+1, tries, t.p.timeout)
				}
				break // send the window again
			}
			if err != nil {
				return fmt.Errorf("waiting for the acknowledgement of block %d: %w", acked+1, err)
			}
			if n < 4 {
				continue
			}
			switch binary.BigEndian.Uint16(in) {
			case opACK:
			case opERROR:
				msg := in[4:n]
				if i := bytes.IndexByte(msg, 0); i >= 0 {
					msg = msg[:i]
				}
				return fmt.Errorf("the client ended the transfer at block %d: error %d %q", acked+1, binary.BigEndian.Uint16(in[2:]), msg)
			default:
				continue
			}
			blk := binary.BigEndian.Uint16(in[2:])
			if oack {
				if blk != 0 {
					continue
				}
				oack, tries = false, 0
				break
			}
			// Block numbers wrap at 65536; the ACK names a block of the window just sent.
			d := int64(blk - uint16(acked))
			if d == 0 || d > end-acked {
				continue // a duplicate, or a stale ACK of an earlier window
			}
			acked += d
			t.sent, tries = min(acked*bs, t.size), 0
			break
		}
	}
	return nil
}

// send writes DATA block b (counted from 1).
func (t *transfer) send(out []byte, b, bs int64) error {
	off := (b - 1) * bs
	n := min(bs, t.size-off)
	if n > 0 {
		got, err := t.file.ReadAt(out[4:4+n], off)
		if int64(got) < n {
			return fmt.Errorf("reading the file at %d: %w", off, err)
		}
	}
	binary.BigEndian.PutUint16(out[0:], opDATA)
	binary.BigEndian.PutUint16(out[2:], uint16(b)) // wraps to 0 after 65535, as clients expect
	if _, err := t.conn.Write(out[:4+n]); err != nil {
		return fmt.Errorf("sending block %d: %w", b, err)
	}
	return nil
}
