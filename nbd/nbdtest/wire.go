package nbdtest

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// The messages: what a client sends, what a server answers, and the rules
// of proto.md each answer is checked against. These work on any reader or
// writer, without a Client.

// ErrNotNBD is ReadGreeting's error for a greeting without NBD's magic.
var ErrNotNBD = errors.New("nbdtest: not an NBD greeting")

// ReadGreeting reads a fixed-newstyle greeting and returns its handshake
// flags. A server that hung up first gives io.EOF (or
// io.ErrUnexpectedEOF, or the connection's error).
func ReadGreeting(r io.Reader) (uint16, error) {
	var h [18]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	if binary.BigEndian.Uint64(h[0:]) != MagicNBD || binary.BigEndian.Uint64(h[8:]) != MagicIHaveOpt {
		return 0, fmt.Errorf("%w: %x", ErrNotNBD, h)
	}
	return binary.BigEndian.Uint16(h[16:]), nil
}

// EncodeOption is an option request: IHAVEOPT, code, length, data.
func EncodeOption(code uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, MagicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// InfoOptionData is the data of INFO and GO: the export name and the
// information requests.
func InfoOptionData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// MetaOptionData is the data of LIST_META_CONTEXT and SET_META_CONTEXT.
func MetaOptionData(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// OptReply is one option reply.
type OptReply struct {
	Opt, Type uint32
	Data      []byte
}

// IsErr reports an error reply.
func (r OptReply) IsErr() bool { return r.Type&(1<<31) != 0 }

// maxOptReply bounds the data of one option reply the client reads.
const maxOptReply = 1 << 24

// ReadOptReply reads one option reply.
func ReadOptReply(r io.Reader) (OptReply, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return OptReply{}, err
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != MagicOptReply {
		return OptReply{}, fmt.Errorf("option reply magic %#x", m)
	}
	o := OptReply{Opt: binary.BigEndian.Uint32(h[8:]), Type: binary.BigEndian.Uint32(h[12:])}
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxOptReply {
		return OptReply{}, fmt.Errorf("option reply of %d bytes", n)
	}
	o.Data = make([]byte, n)
	if _, err := io.ReadFull(r, o.Data); err != nil {
		return OptReply{}, err
	}
	return o, nil
}

// CheckString checks a protocol string: at most MaxString bytes of UTF-8
// without NUL.
func CheckString(b []byte) error {
	switch {
	case len(b) > MaxString:
		return fmt.Errorf("string of %d bytes is longer than %d", len(b), MaxString)
	case !utf8.Valid(b):
		return errors.New("string is not UTF-8")
	case slices.Contains(b, 0):
		return errors.New("string contains NUL")
	}
	return nil
}

// CheckOptReply checks the rules of proto.md for one reply to option opt.
func CheckOptReply(opt uint32, r OptReply) error {
	if r.Opt != opt {
		return fmt.Errorf("reply for option %d to option %d", r.Opt, opt)
	}
	switch r.Type {
	case RepAck:
		if len(r.Data) != 0 {
			return fmt.Errorf("ACK with %d bytes", len(r.Data))
		}
	case RepServer:
		if opt != OptList || len(r.Data) < 4 || uint64(binary.BigEndian.Uint32(r.Data)) > uint64(len(r.Data)-4) {
			return fmt.Errorf("bad REP_SERVER %x", r.Data)
		}
	case RepInfo:
		if opt != OptInfo && opt != OptGo || len(r.Data) < 2 {
			return fmt.Errorf("bad REP_INFO %x", r.Data)
		}
		switch binary.BigEndian.Uint16(r.Data) {
		case InfoExport:
			if len(r.Data) != 12 {
				return fmt.Errorf("INFO_EXPORT of %d bytes", len(r.Data))
			}
		case InfoBlockSize:
			if len(r.Data) != 14 {
				return fmt.Errorf("INFO_BLOCK_SIZE of %d bytes", len(r.Data))
			}
		}
	case RepMetaContext:
		if opt != OptListMetaContext && opt != OptSetMetaContext || len(r.Data) < 5 {
			return fmt.Errorf("bad REP_META_CONTEXT %x", r.Data)
		}
	default:
		if !r.IsErr() {
			return fmt.Errorf("unknown reply type %#x", r.Type)
		}
		if err := CheckString(r.Data); err != nil {
			return fmt.Errorf("error message: %v", err)
		}
	}
	return nil
}

// ExportInfo is what INFO or GO told about an export.
type ExportInfo struct {
	Size                          uint64
	TFlags                        uint16
	Name, Description             *string // nil when not sent
	MinBlock, PrefBlock, MaxBlock uint32
	HasBlockSize                  bool
	Replies                       []OptReply
	UnknownInformations           int // REP_INFO of types not known here
}

// ParseInfo collects the REP_INFO replies of INFO or GO.
func ParseInfo(rs []OptReply) ExportInfo {
	var e ExportInfo
	e.Replies = rs
	for _, r := range rs {
		if r.Type != RepInfo {
			continue
		}
		switch binary.BigEndian.Uint16(r.Data) {
		case InfoExport:
			e.Size = binary.BigEndian.Uint64(r.Data[2:])
			e.TFlags = binary.BigEndian.Uint16(r.Data[10:])
		case InfoName:
			s := string(r.Data[2:])
			e.Name = &s
		case InfoDescription:
			s := string(r.Data[2:])
			e.Description = &s
		case InfoBlockSize:
			e.HasBlockSize = true
			e.MinBlock = binary.BigEndian.Uint32(r.Data[2:])
			e.PrefBlock = binary.BigEndian.Uint32(r.Data[6:])
			e.MaxBlock = binary.BigEndian.Uint32(r.Data[10:])
		default:
			e.UnknownInformations++
		}
	}
	return e
}

// MetaContext is one REP_META_CONTEXT.
type MetaContext struct {
	ID   uint32
	Name string
}

// ParseMeta collects the REP_META_CONTEXT replies.
func ParseMeta(rs []OptReply) []MetaContext {
	var out []MetaContext
	for _, r := range rs {
		if r.Type == RepMetaContext {
			out = append(out, MetaContext{binary.BigEndian.Uint32(r.Data), string(r.Data[4:])})
		}
	}
	return out
}

// RepName names an option reply type.
func RepName(t uint32) string {
	names := map[uint32]string{
		RepAck: "ACK", RepServer: "SERVER", RepInfo: "INFO", RepMetaContext: "META_CONTEXT",
		RepErrUnsup: "ERR_UNSUP", RepErrPolicy: "ERR_POLICY", RepErrInvalid: "ERR_INVALID",
		RepErrPlatform: "ERR_PLATFORM", RepErrTLSReqd: "ERR_TLS_REQD", RepErrUnknown: "ERR_UNKNOWN",
		RepErrShutdown: "ERR_SHUTDOWN", RepErrBlockSizeReqd: "ERR_BLOCK_SIZE_REQD", RepErrTooBig: "ERR_TOO_BIG",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("%#x", t)
}

// FmtReplies shows option replies for a failure message.
func FmtReplies(rs []OptReply) string {
	var parts []string
	for _, r := range rs {
		s := RepName(r.Type)
		if len(r.Data) > 0 {
			if r.IsErr() {
				s += fmt.Sprintf("(%q)", r.Data)
			} else {
				s += fmt.Sprintf("(%x)", r.Data)
			}
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// EncodeRequest is a request header.
func EncodeRequest(flags, typ uint16, cookie, off uint64, length uint32) []byte {
	b := make([]byte, RequestHeaderLen)
	binary.BigEndian.PutUint32(b[0:], MagicRequest)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], cookie)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
	return b
}

// Request is what a reply answers: a request's header fields.
type Request struct {
	Type   uint16
	Flags  uint16
	Offset uint64
	Length uint32
}

// Msg is one simple reply or one structured reply chunk.
type Msg struct {
	Simple  bool
	Errno   uint32 // of a simple reply
	Flags   uint16 // of a chunk
	Type    uint16 // of a chunk
	Cookie  uint64
	Payload []byte // a chunk's payload, or the data of a simple READ reply
}

// Done reports the last message of a reply.
func (m Msg) Done() bool { return m.Simple || m.Flags&ReplyFlagDone != 0 }

// String shows a message for a failure message.
func (m Msg) String() string {
	if m.Simple {
		return fmt.Sprintf("simple(err=%d, %d bytes)", m.Errno, len(m.Payload))
	}
	return fmt.Sprintf("chunk(type=%#x flags=%d len=%d)", m.Type, m.Flags, len(m.Payload))
}

// maxChunk bounds the payload of one chunk the client reads.
const maxChunk = 64 << 20

// ReadMsg reads one reply message and checks its shape. readLen tells how
// much data a successful simple reply to cookie carries (a READ's length
// without structured replies), and false for a cookie nothing was sent
// with.
func ReadMsg(r io.Reader, readLen func(cookie uint64) (int, bool)) (Msg, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:4]); err != nil {
		return Msg{}, err
	}
	switch m := binary.BigEndian.Uint32(h[:]); m {
	case MagicSimple:
		if _, err := io.ReadFull(r, h[4:16]); err != nil {
			return Msg{}, fmt.Errorf("truncated simple reply: %w", err)
		}
		out := Msg{Simple: true, Errno: binary.BigEndian.Uint32(h[4:]), Cookie: binary.BigEndian.Uint64(h[8:])}
		n, ok := readLen(out.Cookie)
		if !ok {
			return out, fmt.Errorf("simple reply for unknown cookie %d", out.Cookie)
		}
		if out.Errno == 0 && n > 0 {
			out.Payload = make([]byte, n)
			if _, err := io.ReadFull(r, out.Payload); err != nil {
				return out, fmt.Errorf("truncated simple read data: %w", err)
			}
		}
		return out, nil
	case MagicStructured:
		if _, err := io.ReadFull(r, h[4:20]); err != nil {
			return Msg{}, fmt.Errorf("truncated chunk header: %w", err)
		}
		out := Msg{Flags: binary.BigEndian.Uint16(h[4:]), Type: binary.BigEndian.Uint16(h[6:]),
			Cookie: binary.BigEndian.Uint64(h[8:])}
		n := binary.BigEndian.Uint32(h[16:])
		if n > maxChunk {
			return out, fmt.Errorf("chunk of %d bytes", n)
		}
		out.Payload = make([]byte, n)
		if _, err := io.ReadFull(r, out.Payload); err != nil {
			return out, fmt.Errorf("truncated chunk: %w", err)
		}
		return out, CheckChunk(out)
	default:
		return Msg{}, fmt.Errorf("reply magic %#x", m)
	}
}

// CheckChunk checks one chunk's shape against proto.md.
func CheckChunk(m Msg) error {
	p := m.Payload
	switch m.Type {
	case ChunkNone:
		if len(p) != 0 || m.Flags&ReplyFlagDone == 0 {
			return fmt.Errorf("NONE chunk of %d bytes, flags %#x", len(p), m.Flags)
		}
	case ChunkOffsetData:
		if len(p) < 9 {
			return fmt.Errorf("OFFSET_DATA of %d bytes", len(p))
		}
	case ChunkOffsetHole:
		if len(p) != 12 || binary.BigEndian.Uint32(p[8:]) == 0 {
			return fmt.Errorf("bad OFFSET_HOLE %x", p)
		}
	case ChunkBlockStatus:
		if len(p) < 12 || (len(p)-4)%8 != 0 {
			return fmt.Errorf("BLOCK_STATUS of %d bytes", len(p))
		}
		for i := 4; i < len(p); i += 8 {
			if binary.BigEndian.Uint32(p[i:]) == 0 {
				return fmt.Errorf("BLOCK_STATUS extent of length 0")
			}
		}
	case ChunkError, ChunkErrorOffset:
		if len(p) < 6 {
			return fmt.Errorf("ERROR chunk of %d bytes", len(p))
		}
		if binary.BigEndian.Uint32(p) == 0 {
			return fmt.Errorf("ERROR chunk with error 0")
		}
		ml := int(binary.BigEndian.Uint16(p[4:]))
		want := 6 + ml
		if m.Type == ChunkErrorOffset {
			want += 8
		}
		if len(p) != want {
			return fmt.Errorf("ERROR chunk of %d bytes with a %d-byte message", len(p), ml)
		}
		if err := CheckString(p[6 : 6+ml]); err != nil {
			return fmt.Errorf("ERROR chunk message: %v", err)
		}
	default:
		return fmt.Errorf("unknown chunk type %#x", m.Type)
	}
	return nil
}

// ErrorMessage is the message of an ERROR chunk ("" for other messages).
func (m Msg) ErrorMessage() string {
	if m.Simple || (m.Type != ChunkError && m.Type != ChunkErrorOffset) || len(m.Payload) < 6 {
		return ""
	}
	ml := int(binary.BigEndian.Uint16(m.Payload[4:]))
	return string(m.Payload[6:min(6+ml, len(m.Payload))])
}

// Extents decodes a BLOCK_STATUS chunk: the context ID and (length,
// flags) pairs.
func Extents(m Msg) (uint32, [][2]uint32) {
	id := binary.BigEndian.Uint32(m.Payload)
	var out [][2]uint32
	for i := 4; i+8 <= len(m.Payload); i += 8 {
		out = append(out, [2]uint32{binary.BigEndian.Uint32(m.Payload[i:]), binary.BigEndian.Uint32(m.Payload[i+4:])})
	}
	return id, out
}

// Reply is the complete reply to one request.
type Reply struct {
	Cookie uint64
	Req    Request
	Msgs   []Msg
	Errno  uint32
	Data   []byte // a READ's data, assembled from its chunks
}

func (r *Reply) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cookie %d errno %d:", r.Cookie, r.Errno)
	for _, m := range r.Msgs {
		b.WriteString(" " + m.String())
	}
	return b.String()
}

// finish checks a complete reply and assembles a READ's data.
func (r *Reply) finish(structured bool) error {
	if !structured {
		if len(r.Msgs) != 1 {
			return fmt.Errorf("%v: several simple replies", r)
		}
		if r.Req.Type == CmdRead && r.Errno == 0 {
			r.Data = r.Msgs[0].Payload
		}
		return nil
	}
	for _, m := range r.Msgs {
		switch m.Type {
		case ChunkOffsetData, ChunkOffsetHole:
			if r.Req.Type != CmdRead {
				return fmt.Errorf("%v: read chunk for command %d", r, r.Req.Type)
			}
		case ChunkBlockStatus:
			if r.Req.Type != CmdBlockStatus {
				return fmt.Errorf("%v: block status chunk for command %d", r, r.Req.Type)
			}
		}
	}
	if r.Req.Type == CmdRead {
		data, err := assembleRead(r.Req.Offset, r.Req.Length, r.Msgs)
		if err != nil {
			return fmt.Errorf("%v: %w", r, err)
		}
		if r.Errno == 0 {
			r.Data = data
		}
	}
	return nil
}

// assembleRead checks that the content chunks of a structured READ reply
// stay inside the request, do not overlap and, without an error, cover it
// exactly; it returns the data.
func assembleRead(off uint64, length uint32, msgs []Msg) ([]byte, error) {
	type span struct {
		rel, n uint64
		data   []byte // nil for a hole
	}
	var spans []span
	failed := false
	for _, m := range msgs {
		var at, n uint64
		var data []byte
		switch m.Type {
		case ChunkOffsetData:
			at, n, data = binary.BigEndian.Uint64(m.Payload), uint64(len(m.Payload)-8), m.Payload[8:]
		case ChunkOffsetHole:
			at, n = binary.BigEndian.Uint64(m.Payload), uint64(binary.BigEndian.Uint32(m.Payload[8:]))
		case ChunkError, ChunkErrorOffset:
			failed = true
			continue
		case ChunkNone:
			continue
		default:
			return nil, fmt.Errorf("chunk type %#x in a READ reply", m.Type)
		}
		if at < off || at-off > uint64(length) || n > uint64(length)-(at-off) {
			return nil, fmt.Errorf("chunk [%d,+%d) outside the request [%d,+%d)", at, n, off, length)
		}
		spans = append(spans, span{at - off, n, data})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.rel, b.rel) })
	var covered uint64
	for i, s := range spans {
		if i > 0 && spans[i-1].rel+spans[i-1].n > s.rel {
			return nil, fmt.Errorf("chunks overlap at %d", off+s.rel)
		}
		covered += s.n
	}
	if failed {
		if covered != 0 {
			return nil, fmt.Errorf("an error reply also carries %d bytes of content", covered)
		}
		return nil, nil
	}
	if covered != uint64(length) {
		return nil, fmt.Errorf("chunks cover %d of %d bytes", covered, length)
	}
	data := make([]byte, length)
	for _, s := range spans {
		copy(data[s.rel:], s.data)
	}
	return data, nil
}

// Errno is an NBD error reply as a Go error.
type Errno uint32

func (e Errno) Error() string { return fmt.Sprintf("nbd error %d", uint32(e)) }
