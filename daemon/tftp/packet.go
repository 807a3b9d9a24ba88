package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Opcodes of RFC 1350 and RFC 2347.
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// ErrorCode is the code of a TFTP ERROR packet.
type ErrorCode uint16

// The error codes of RFC 1350 and RFC 2347 that the server sends.
const (
	ErrUndefined       ErrorCode = 0
	ErrFileNotFound    ErrorCode = 1
	ErrAccessViolation ErrorCode = 2
	ErrIllegalOp       ErrorCode = 4
	ErrBadOption       ErrorCode = 8
)

// Limits of the negotiated options.
const (
	defaultBlockSize = 512
	minBlockSize     = 8     // RFC 2348
	maxBlockSize     = 65464 // RFC 2348
	// EthernetBlockSize fills a 1500-byte Ethernet frame: 1500 - 20 (IPv4) - 8 (UDP) - 4 (TFTP).
	EthernetBlockSize = 1468
	// MaxWindowSize bounds RFC 7440's windowsize: a window is held as block numbers, not
	// data, but a large one floods a firmware's receive ring for no gain.
	MaxWindowSize  = 64
	defaultTimeout = time.Second
)

// request is a parsed RRQ or WRQ.
type request struct {
	op   uint16
	name string
	mode string // lower case
	// opts holds the options in the order they came, names in lower case (RFC 2347: option
	// names are case-insensitive).
	opts [][2]string
}

var errMalformed = errors.New("malformed request")

// parseRequest reads an RRQ or WRQ: opcode, file name, mode and option pairs, each string
// ended by NUL. A trailing option without a value is dropped, as RFC 2347 clients differ there.
func parseRequest(p []byte) (request, error) {
	if len(p) < 2 {
		return request{}, errMalformed
	}
	r := request{op: binary.BigEndian.Uint16(p)}
	if r.op != opRRQ && r.op != opWRQ {
		return request{}, errMalformed
	}
	rest := p[2:]
	var fields []string
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			// An unterminated last string: RFC 1350 requires the NUL, so the request is cut.
			return request{}, errMalformed
		}
		fields = append(fields, string(rest[:i]))
		rest = rest[i+1:]
	}
	if len(fields) < 2 {
		return request{}, errMalformed
	}
	r.name, r.mode = fields[0], strings.ToLower(fields[1])
	for i := 2; i+1 < len(fields); i += 2 {
		r.opts = append(r.opts, [2]string{strings.ToLower(fields[i]), fields[i+1]})
	}
	return r, nil
}

// params are a transfer's negotiated options.
type params struct {
	blockSize  int
	windowSize int
	timeout    time.Duration
	// oack lists the options to acknowledge, name and value, in the client's order; empty
	// means no OACK: the transfer starts with DATA block 1.
	oack [][2]string
}

// negotiate applies the server's limits to what a client asks. Unknown options and values out
// of their RFC's range are left out of the OACK, which tells the client they are not in force.
func negotiate(opts [][2]string, size int64, maxBlock int) params {
	p := params{blockSize: defaultBlockSize, windowSize: 1, timeout: defaultTimeout}
	seen := map[string]bool{}
	for _, o := range opts {
		name, val := o[0], o[1]
		if seen[name] {
			continue
		}
		seen[name] = true
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "blksize":
			if n < minBlockSize || n > maxBlockSize {
				continue
			}
			p.blockSize = int(min(n, int64(maxBlock)))
			p.oack = append(p.oack, [2]string{name, strconv.Itoa(p.blockSize)})
		case "windowsize":
			if n < 1 || n > 65535 {
				continue
			}
			p.windowSize = int(min(n, MaxWindowSize))
			p.oack = append(p.oack, [2]string{name, strconv.Itoa(p.windowSize)})
		case "timeout":
			if n < 1 || n > 255 {
				continue
			}
			p.timeout = time.Duration(n) * time.Second
			p.oack = append(p.oack, [2]string{name, val})
		case "tsize":
			if n < 0 {
				continue
			}
			p.oack = append(p.oack, [2]string{name, strconv.FormatInt(size, 10)})
		}
	}
	return p
}

func appendOACK(b []byte, opts [][2]string) []byte {
	b = binary.BigEndian.AppendUint16(b[:0], opOACK)
	for _, o := range opts {
		b = append(b, o[0]...)
		b = append(b, 0)
		b = append(b, o[1]...)
		b = append(b, 0)
	}
	return b
}

func errorPacket(code ErrorCode, msg string) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 5+len(msg)), opERROR)
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	b = append(b, msg...)
	return append(b, 0)
}

// checkName refuses names that are paths rather than names, before any lookup: the server
// serves an allow-list, and saying "access violation" here tells an operator reading a
// firmware's screen that the name, not the store, is wrong.
func checkName(name string) (ErrorCode, string, bool) {
	switch {
	case name == "":
		return ErrIllegalOp, "no file name", false
	case strings.HasPrefix(name, "/"):
		return ErrAccessViolation, "absolute paths are not served; ask for a file name such as ipxe.efi", false
	case strings.ContainsRune(name, '\\'):
		return ErrAccessViolation, "backslashes are not served; ask for a file name such as ipxe.efi", false
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return ErrAccessViolation, "control characters are not served", false
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return ErrAccessViolation, "'..' is not served; ask for a file name such as ipxe.efi", false
		}
	}
	return 0, "", true
}
