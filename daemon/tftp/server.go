package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Files opens the files the server sends, by the exact name a client asks for. Open returns an
// error wrapping fs.ErrNotExist for any name it does not serve.
type Files interface {
	Open(name string) (File, error)
}

// File is one file to send: read at any offset (a window may be sent again), of a known size
// (for tsize).
type File interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Config configures a Server.
type Config struct {
	// Addr is the IPv4 address and UDP port to listen on: "10.20.0.1:69", or ":69" for every
	// address. Empty means ":69".
	Addr string
	// Interface, when set, binds the server and each transfer to that interface alone
	// (SO_BINDTODEVICE), and raises the largest blksize to its MTU less 32.
	Interface string
	// Files holds what is served; Store serves a sealed store's iPXE binaries.
	Files Files
	// Log receives one line per transfer and per refused request. Nil discards.
	Log *slog.Logger
}

// MaxTransfers bounds the transfers in flight; a request beyond it is dropped, and the client
// asks again after its timeout.
const MaxTransfers = 512

const retries = 5 // retransmissions of one window before a transfer is given up

// Server is a read-only TFTP server. Make one with New and run it with Run.
type Server struct {
	conn     *net.UDPConn
	files    Files
	iface    string
	maxBlock int
	log      *slog.Logger
	slots    chan struct{}
	wg       sync.WaitGroup

	mu         sync.Mutex
	lastBusyAt time.Time
}

// New checks cfg and binds the server's socket, so that a taken port or a missing interface
// is reported before anything serves.
func New(cfg Config) (*Server, error) {
	if cfg.Files == nil {
		return nil, errors.New("tftp: no files to serve; give Config.Files (tftp.OpenStore for a store)")
	}
	addr := cfg.Addr
	if addr == "" {
		addr = ":69"
	}
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("tftp: address %q: %w; write IPv4:PORT or :PORT, e.g. \":69\"", addr, err)
	}
	maxBlock := EthernetBlockSize
	if cfg.Interface != "" {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("tftp: interface %q: %w", cfg.Interface, err)
		}
		maxBlock = min(max(ifi.MTU-32, defaultBlockSize), maxBlockSize)
	}
	lc := net.ListenConfig{Control: control(cfg.Interface, true)}
	pc, err := lc.ListenPacket(context.Background(), "udp4", ua.String())
	if err != nil {
		return nil, fmt.Errorf("tftp: listening on %s: %w", addr, err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		conn: pc.(*net.UDPConn), files: cfg.Files, iface: cfg.Interface, maxBlock: maxBlock,
		log: log, slots: make(chan struct{}, MaxTransfers),
	}, nil
}

// Addr is the address the server listens on (with the port chosen when Config.Addr asked for 0).
func (s *Server) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Run serves until ctx ends, then stops every transfer, closes the socket and returns
// ctx.Err(). It returns another error only when the socket fails.
func (s *Server) Run(ctx context.Context) error {
	defer s.wg.Wait()
	stop := context.AfterFunc(ctx, func() { _ = s.conn.Close() })
	defer stop()
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for {
		n, oobn, _, from, err := s.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			_ = s.conn.Close()
			return fmt.Errorf("tftp: reading requests: %w", err)
		}
		if n < 2 || !from.IsValid() || from.Port() == 0 {
			continue
		}
		local := localAddr(oob[:oobn])
		switch binary.BigEndian.Uint16(buf) {
		case opRRQ:
		case opWRQ:
			s.refuse(from, local, ErrAccessViolation, "this server is read-only", "")
			s.log.Info("tftp write request refused", "client", from.String())
			continue
		default:
			// DATA, ACK and ERROR belong to transfers, which have their own sockets; anything
			// else is noise. Neither gets an answer, so the port reflects nothing.
			continue
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.busy()
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		s.wg.Go(func() {
			defer func() { <-s.slots }()
			s.serve(ctx, from, local, pkt)
		})
	}
}

func (s *Server) busy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.lastBusyAt) > 10*time.Second {
		s.lastBusyAt = time.Now()
		s.log.Warn("tftp: too many transfers at once; dropping requests until some end", "max", MaxTransfers)
	}
}

// refuse answers a request with an ERROR packet, from the address the request came to.
func (s *Server) refuse(client netip.AddrPort, local netip.Addr, code ErrorCode, msg, name string) {
	_, _, _ = s.conn.WriteMsgUDPAddrPort(errorPacket(code, msg), pktinfo(local), client)
	if name != "" {
		s.log.Info("tftp request refused", "client", client.String(), "file", name, "reason", msg)
	}
}

// serve answers one read request.
func (s *Server) serve(ctx context.Context, client netip.AddrPort, local netip.Addr, pkt []byte) {
	req, err := parseRequest(pkt)
	if err != nil {
		s.refuse(client, local, ErrIllegalOp, "malformed read request", "")
		return
	}
	name := req.name
	if len(name) > 256 {
		name = name[:256] + "…"
	}
	if code, msg, ok := checkName(req.name); !ok {
		s.refuse(client, local, code, msg, name)
		return
	}
	if req.mode != "octet" {
		s.refuse(client, local, ErrIllegalOp, fmt.Sprintf("mode %q is not served; the files are binaries: ask for octet", req.mode), name)
		return
	}
	f, err := s.files.Open(req.name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.refuse(client, local, ErrFileNotFound, "no such file; this server holds the store's iPXE binaries only", name)
		} else {
			s.refuse(client, local, ErrUndefined, "cannot read the file", "")
			s.log.Warn("tftp: opening a file", "client", client.String(), "file", name, "err", err)
		}
		return
	}
	defer f.Close()
	start := time.Now()
	p := negotiate(req.opts, f.Size(), s.maxBlock)
	conn, err := s.dial(ctx, local, client)
	if err != nil {
		s.refuse(client, local, ErrUndefined, "server error", "")
		s.log.Warn("tftp: opening a transfer socket", "client", client.String(), "file", name, "err", err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	t := &transfer{conn: conn, file: f, size: f.Size(), p: p}
	err = t.run()
	attrs := []any{"client", client.String(), "file", name, "bytes", t.sent, "duration", time.Since(start).Round(time.Millisecond),
		"blksize", p.blockSize, "windowsize", p.windowSize}
	switch {
	case err == nil:
		s.log.Info("tftp transfer", attrs...)
	case ctx.Err() != nil:
		s.log.Info("tftp transfer stopped: the server is stopping", attrs...)
	default:
		s.log.Warn("tftp transfer failed", append(attrs, "err", err)...)
	}
}

// dial opens a transfer's socket: a new port (the transfer ID of RFC 1350) on the address the
// request came to, connected to the client so that the kernel drops anyone else's packets.
func (s *Server) dial(ctx context.Context, local netip.Addr, client netip.AddrPort) (*net.UDPConn, error) {
	d := net.Dialer{Control: control(s.iface, false)}
	if local.IsValid() {
		d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
	}
	c, err := d.DialContext(ctx, "udp4", client.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}
