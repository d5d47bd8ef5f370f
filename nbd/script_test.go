package nbd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// Scripted sessions (testdata/negotiate, testdata/transmit): each
// "session" directive runs a fresh server and one client through the
// lines of its input and prints what the server answered.
//
//	session [tls] [minblock=N] [maxpayload=N]
//	flags N                 client flags (the greeting is read first)
//	opt NAME|CODE [data=HEX] [name=S] [namehex=HEX] [namelen=N] [info=A,B]
//	    [q=S]... [qlen=N] [nq=N]     (name= builds the data of INFO, GO,
//	                                  EXPORT_NAME and the meta-context options)
//	starttls                STARTTLS, then the TLS handshake on ACK
//	req CMD [off=N] [len=N] [flags=F|F] [cookie=N]
//	raw HEX                 bytes as they are
//	expect-closed           the server must hang up now
//
// Run with -rewrite to regenerate the expected output, then review it.

var optNames = map[string]uint32{
	"EXPORT_NAME": optExportName, "ABORT": optAbort, "LIST": optList, "STARTTLS": optStartTLS,
	"INFO": optInfo, "GO": optGo, "STRUCTURED_REPLY": optStructuredReply,
	"LIST_META_CONTEXT": optListMetaContext, "SET_META_CONTEXT": optSetMetaContext,
	"EXTENDED_HEADERS": optExtendedHeaders,
}

var cmdNames = map[string]uint16{
	"READ": cmdRead, "WRITE": cmdWrite, "DISC": cmdDisc, "FLUSH": cmdFlush, "TRIM": cmdTrim,
	"CACHE": cmdCache, "WRITE_ZEROES": cmdWriteZeroes, "BLOCK_STATUS": cmdBlockStatus,
}

var cmdFlagNames = map[string]uint16{
	"FUA": cmdFlagFUA, "NO_HOLE": cmdFlagNoHole, "DF": cmdFlagDF, "REQ_ONE": cmdFlagReqOne,
	"FAST_ZERO": cmdFlagFastZero,
}

func errnoName(e uint32) string {
	switch Errno(e) {
	case 0:
		return "ok"
	case EPERM:
		return "EPERM"
	case EIO:
		return "EIO"
	case ENOMEM:
		return "ENOMEM"
	case EINVAL:
		return "EINVAL"
	case ENOSPC:
		return "ENOSPC"
	case EOVERFLOW:
		return "EOVERFLOW"
	case ENOTSUP:
		return "ENOTSUP"
	case ESHUTDOWN:
		return "ESHUTDOWN"
	}
	return fmt.Sprintf("errno(%d)", e)
}

func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/scripts", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "session" {
				d.Fatalf(t, "unknown directive %s", d.Cmd)
			}
			var out string
			t.Run(strings.ReplaceAll(d.Pos, "/", "_"), func(t *testing.T) { out = runScript(t, d) })
			return out
		})
	})
}

type script struct {
	t      *testing.T
	ts     *testServer
	c      *nbdtest.Client
	out    strings.Builder
	flags  uint32
	closed bool
}

func (s *script) printf(format string, args ...any) {
	fmt.Fprintf(&s.out, format, args...)
	s.out.WriteByte('\n')
}

func runScript(t *testing.T, d *datadriven.TestData) string {
	var tlsClient *tls.Config
	ts := newTestServer(t, nil, func(o *Options) {
		for _, a := range d.CmdArgs {
			switch a.Key {
			case "tls":
				o.TLS, tlsClient = nbdtest.TLSConfigs(t)
			case "minblock":
				v, _ := strconv.Atoi(a.SingleVal(t))
				o.MinBlock = uint32(v)
			case "maxpayload":
				v, _ := strconv.Atoi(a.SingleVal(t))
				o.MaxPayload = uint32(v)
			default:
				d.Fatalf(t, "unknown session argument %s", a.Key)
			}
		}
	})
	s := &script{t: t, ts: ts}
	s.c = nbdtest.NewClient(t, ts.rawConn())
	s.c.Conn.SetDeadline(time.Now().Add(20 * time.Second))
	var h [18]byte
	if _, err := io.ReadFull(s.c.R, h[:]); err != nil {
		d.Fatalf(t, "hello: %v", err)
	}
	s.printf("hello %s %s flags=%#04x", hex.EncodeToString(h[:8]), hex.EncodeToString(h[8:16]), binary.BigEndian.Uint16(h[16:]))
	for _, line := range strings.Split(d.Input, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if s.closed {
			d.Fatalf(t, "%q after the connection closed", line)
		}
		f := strings.Fields(line)
		switch f[0] {
		case "flags":
			v, err := strconv.ParseUint(f[1], 0, 32)
			if err != nil {
				d.Fatalf(t, "%s: %v", line, err)
			}
			s.flags = uint32(v)
			s.c.SendFlags(s.flags)
		case "opt":
			s.option(d, f[1:])
		case "starttls":
			s.c.SendOption(optStartTLS, nil)
			if s.replies("STARTTLS", optStartTLS) == repAck {
				tc := tls.Client(s.c.Conn, tlsClient)
				if err := tc.Handshake(); err != nil {
					s.printf("tls: %v", err)
				} else {
					s.printf("tls: handshake done")
					s.c.Conn, s.c.R, s.c.Structured = tc, bufio.NewReader(tc), false
				}
			}
		case "req":
			s.request(d, f[1:])
		case "raw":
			b, err := hex.DecodeString(strings.Join(f[1:], ""))
			if err != nil {
				d.Fatalf(t, "%s: %v", line, err)
			}
			s.c.SendRaw(b)
		case "expect-closed":
			s.expectClosed()
		default:
			d.Fatalf(t, "unknown command %q", line)
		}
	}
	return s.out.String()
}

// expectClosed prints "closed" when the server hangs up without sending
// more, and what it sent otherwise.
func (s *script) expectClosed() {
	s.c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(s.c.R)
	var ne net.Error
	switch {
	case len(b) > 0:
		s.printf("unexpected %d bytes: %x", len(b), b[:min(len(b), 32)])
	case errors.As(err, &ne) && ne.Timeout():
		s.printf("still open")
	default:
		s.printf("closed")
	}
	s.closed = true
}

func (s *script) option(d *datadriven.TestData, args []string) {
	t := s.t
	code, ok := optNames[args[0]]
	if !ok {
		v, err := strconv.ParseUint(args[0], 0, 32)
		if err != nil {
			d.Fatalf(t, "unknown option %s", args[0])
		}
		code = uint32(v)
	}
	var data []byte
	var name []byte
	haveName, haveData := false, false
	var infos []uint16
	var queries []string
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "data":
			b, err := hex.DecodeString(v)
			if err != nil {
				d.Fatalf(t, "%s: %v", a, err)
			}
			data, haveData = b, true
		case "name":
			name, haveName = []byte(v), true
		case "namehex":
			b, err := hex.DecodeString(v)
			if err != nil {
				d.Fatalf(t, "%s: %v", a, err)
			}
			name, haveName = b, true
		case "namelen":
			n, _ := strconv.Atoi(v)
			name, haveName = bytes.Repeat([]byte{'a'}, n), true
		case "info":
			for _, x := range strings.Split(v, ",") {
				n, _ := strconv.Atoi(x)
				infos = append(infos, uint16(n))
			}
		case "q":
			queries = append(queries, v)
		case "qlen":
			n, _ := strconv.Atoi(v)
			queries = append(queries, strings.Repeat("q", n))
		case "nq":
			n, _ := strconv.Atoi(v)
			for i := range n {
				queries = append(queries, fmt.Sprintf("x:%d", i))
			}
		default:
			d.Fatalf(t, "unknown option argument %s", a)
		}
	}
	if !haveData && haveName {
		switch code {
		case optExportName:
			data = name
		case optInfo, optGo:
			data = nbdtest.InfoOptionData(string(name), infos...)
		case optListMetaContext, optSetMetaContext:
			data = nbdtest.MetaOptionData(string(name), queries...)
		default:
			d.Fatalf(t, "name= for option %d", code)
		}
	}
	label := args[0]
	s.c.SendOption(code, data)
	switch code {
	case optExportName:
		s.exportName(label)
	case optAbort:
		if s.replies(label, code) == repAck {
			s.expectClosed()
		}
	case optStructuredReply:
		if s.replies(label, code) == repAck {
			s.c.Structured = true
		}
	default:
		s.replies(label, code)
	}
}

// replies prints the replies to one option up to the final one and returns
// its type (0 if the server hung up).
func (s *script) replies(label string, code uint32) uint32 {
	for {
		r, err := nbdtest.ReadOptReply(s.c.R)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				s.printf("%s: closed", label)
				s.closed = true
				return 0
			}
			s.t.Fatalf("%s: %v", label, err)
		}
		if err := nbdtest.CheckOptReply(code, r); err != nil {
			s.printf("%s: MALFORMED %v", label, err)
		}
		s.printf("%s: %s", label, describeOptReply(r))
		if r.Type == repAck || r.IsErr() {
			if r.IsErr() && code != optAbort {
				// every error carries a human-readable UTF-8 message
				if len(r.Data) == 0 {
					s.printf("%s: (no message)", label)
				}
			}
			return r.Type
		}
	}
}

func describeOptReply(r nbdtest.OptReply) string {
	switch r.Type {
	case repServer:
		n := binary.BigEndian.Uint32(r.Data)
		return fmt.Sprintf("SERVER %q %q", r.Data[4:4+n], r.Data[4+n:])
	case repMetaContext:
		return fmt.Sprintf("META_CONTEXT id=%d %q", binary.BigEndian.Uint32(r.Data), r.Data[4:])
	case repInfo:
		switch binary.BigEndian.Uint16(r.Data) {
		case infoExport:
			return fmt.Sprintf("INFO EXPORT size=%d tflags=%#04x", binary.BigEndian.Uint64(r.Data[2:]), binary.BigEndian.Uint16(r.Data[10:]))
		case infoName:
			return fmt.Sprintf("INFO NAME %q", r.Data[2:])
		case infoDescription:
			return fmt.Sprintf("INFO DESCRIPTION %q", r.Data[2:])
		case infoBlockSize:
			return fmt.Sprintf("INFO BLOCK_SIZE min=%d pref=%d max=%d", binary.BigEndian.Uint32(r.Data[2:]),
				binary.BigEndian.Uint32(r.Data[6:]), binary.BigEndian.Uint32(r.Data[10:]))
		}
		return fmt.Sprintf("INFO %x", r.Data)
	}
	return nbdtest.RepName(r.Type)
}

// exportName reads the EXPORT_NAME answer: size, flags and the zeroes
// unless NO_ZEROES was set.
func (s *script) exportName(label string) {
	var b [10]byte
	if _, err := io.ReadFull(s.c.R, b[:]); err != nil {
		s.printf("%s: closed", label)
		s.closed = true
		return
	}
	s.printf("%s: size=%d tflags=%#04x", label, binary.BigEndian.Uint64(b[:]), binary.BigEndian.Uint16(b[8:]))
	if s.flags&flagNoZeroes == 0 {
		var z [124]byte
		if _, err := io.ReadFull(s.c.R, z[:]); err != nil {
			s.printf("%s: zeroes: %v", label, err)
			return
		}
		if z != [124]byte{} {
			s.printf("%s: padding is not zero", label)
		}
		s.printf("%s: 124 zero bytes", label)
	}
}

func (s *script) request(d *datadriven.TestData, args []string) {
	t := s.t
	typ, ok := cmdNames[args[0]]
	if !ok {
		v, err := strconv.ParseUint(args[0], 0, 16)
		if err != nil {
			d.Fatalf(t, "unknown command %s", args[0])
		}
		typ = uint16(v)
	}
	var off uint64
	var length uint32
	var flags uint16
	var payload []byte
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "off":
			n, err := strconv.ParseUint(v, 0, 64)
			if err != nil {
				d.Fatalf(t, "%s: %v", a, err)
			}
			off = n
		case "len":
			n, err := strconv.ParseUint(v, 0, 32)
			if err != nil {
				d.Fatalf(t, "%s: %v", a, err)
			}
			length = uint32(n)
		case "flags":
			for _, x := range strings.Split(v, "|") {
				if fl, ok := cmdFlagNames[x]; ok {
					flags |= fl
					continue
				}
				n, err := strconv.ParseUint(x, 0, 16)
				if err != nil {
					d.Fatalf(t, "%s: %v", a, err)
				}
				flags |= uint16(n)
			}
		default:
			d.Fatalf(t, "unknown request argument %s", a)
		}
	}
	if typ == cmdWrite {
		payload = bytes.Repeat([]byte{0xab}, int(length))
	}
	cookie := s.c.NextCookie()
	// The server may hang up before it reads everything: ignore write
	// errors and report what the reply side sees.
	s.c.Conn.Write(append(nbdtest.EncodeRequest(flags, typ, cookie, off, length), payload...))
	if typ != cmdDisc {
		s.c.Expect(cookie, nbdtest.Request{Type: typ, Flags: flags, Offset: off, Length: length})
	}
	label := args[0]
	if typ == cmdDisc {
		return
	}
	r, err := s.c.ReadReply()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			s.printf("%s: closed", label)
			s.closed = true
			return
		}
		s.printf("%s: MALFORMED %v", label, err)
		s.closed = true
		return
	}
	if r.Cookie != cookie {
		s.printf("%s: reply to cookie %d, want %d", label, r.Cookie, cookie)
	}
	for _, m := range r.Msgs {
		s.printf("%s: %s", label, describeMsg(m))
	}
}

func describeMsg(m nbdtest.Msg) string {
	if m.Simple {
		if len(m.Payload) > 0 {
			return fmt.Sprintf("simple %s data=%d", errnoName(m.Errno), len(m.Payload))
		}
		return "simple " + errnoName(m.Errno)
	}
	done := ""
	if m.Flags&replyFlagDone != 0 {
		done = " DONE"
	}
	p := m.Payload
	switch m.Type {
	case chunkNone:
		return "NONE" + done
	case chunkOffsetData:
		return fmt.Sprintf("OFFSET_DATA off=%d len=%d%s", binary.BigEndian.Uint64(p), len(p)-8, done)
	case chunkOffsetHole:
		return fmt.Sprintf("OFFSET_HOLE off=%d len=%d%s", binary.BigEndian.Uint64(p), binary.BigEndian.Uint32(p[8:]), done)
	case chunkBlockStatus:
		id, ext := nbdtest.Extents(m)
		var parts []string
		for _, e := range ext {
			parts = append(parts, fmt.Sprintf("%d:%d", e[0], e[1]))
		}
		return fmt.Sprintf("BLOCK_STATUS id=%d %s%s", id, strings.Join(parts, " "), done)
	case chunkError:
		return fmt.Sprintf("ERROR %s%s", errnoName(binary.BigEndian.Uint32(p)), done)
	}
	return fmt.Sprintf("chunk %#x%s", m.Type, done)
}
