package nbd

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// maxQueries bounds the meta-context queries of one option (ERR_TOO_BIG).
const maxQueries = 128

// errHangUp ends negotiation with a hard disconnect (a violation, ABORT, or
// an EXPORT_NAME that cannot be answered).
var errHangUp = errors.New("nbd: negotiation ended")

// errNilExport guards against an Exports that opens nothing without
// saying why: the client is refused instead of stranded.
var errNilExport = errors.New("nbd: the export could not be opened")

// option is one option request.
type option struct {
	code uint32
	data []byte
}

// negotiate runs the handshake until the client enters transmission. It
// returns the open export, or an error when the connection should close.
func (c *conn) negotiate() (Export, ExportInfo, error) {
	deadline := time.Now().Add(c.s.opts.HandshakeTimeout)
	c.nc.SetWriteDeadline(deadline)
	c.setReadDeadline(deadline)
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], magicNBD)
	binary.BigEndian.PutUint64(hello[8:], magicIHaveOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.bw.Write(hello[:]); err != nil {
		return nil, ExportInfo{}, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, ExportInfo{}, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return nil, ExportInfo{}, err
	}
	c.clientFlags = binary.BigEndian.Uint32(cf[:])
	if c.clientFlags&^clientFlagsKnown != 0 {
		return nil, ExportInfo{}, fmt.Errorf("nbd: client flags %#x: unknown bits", c.clientFlags)
	}
	if c.s.opts.TLS != nil && c.clientFlags&flagFixedNewstyle == 0 {
		return nil, ExportInfo{}, errors.New("nbd: TLS is required and the client does not speak fixed newstyle")
	}
	for {
		o, err := c.readOption()
		if err != nil {
			return nil, ExportInfo{}, err
		}
		exp, info, err := c.handleOption(o)
		if err != nil || exp != nil {
			if err == nil {
				c.nc.SetWriteDeadline(time.Time{})
				c.setReadDeadline(time.Time{})
			}
			return exp, info, err
		}
		if err := c.bw.Flush(); err != nil {
			return nil, ExportInfo{}, err
		}
	}
}

func (c *conn) readOption() (option, error) {
	var h [16]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return option{}, err
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicIHaveOpt {
		return option{}, fmt.Errorf("nbd: option magic %#x", m)
	}
	o := option{code: binary.BigEndian.Uint32(h[8:])}
	n := binary.BigEndian.Uint32(h[12:])
	if n > maxOptionData {
		return option{}, fmt.Errorf("nbd: option %d carries %d bytes", o.code, n)
	}
	// The buffer grows as the data arrives: a length alone pins nothing.
	data, err := io.ReadAll(io.LimitReader(c.br, int64(n)))
	if err == nil && len(data) < int(n) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return option{}, err
	}
	o.data = data
	return o, nil
}

// handleOption answers one option. A non-nil Export means transmission
// starts now.
func (c *conn) handleOption(o option) (Export, ExportInfo, error) {
	if c.s.isStopping() {
		switch o.code {
		case optExportName:
			return nil, ExportInfo{}, errHangUp
		case optAbort:
			c.reply(o.code, repAck, nil)
			c.bw.Flush()
			return nil, ExportInfo{}, errHangUp
		}
		c.replyError(o.code, repErrShutdown, "server is shutting down")
		return nil, ExportInfo{}, nil
	}
	if c.s.opts.TLS != nil && !c.info.TLS && o.code != optStartTLS && o.code != optAbort {
		if o.code == optExportName {
			return nil, ExportInfo{}, errHangUp // it cannot be refused any other way
		}
		c.replyError(o.code, repErrTLSReqd, "TLS is required: send STARTTLS first")
		return nil, ExportInfo{}, nil
	}
	switch o.code {
	case optExportName:
		return c.exportName(o)
	case optAbort:
		c.reply(o.code, repAck, nil)
		c.bw.Flush()
		return nil, ExportInfo{}, errHangUp
	case optList:
		c.list(o)
	case optStartTLS:
		return nil, ExportInfo{}, c.startTLS(o)
	case optInfo, optGo:
		return c.infoOrGo(o)
	case optStructuredReply:
		switch {
		case len(o.data) != 0:
			c.replyError(o.code, repErrInvalid, "STRUCTURED_REPLY takes no data")
		case c.structured:
			c.replyError(o.code, repErrInvalid, "structured replies are already negotiated")
		default:
			c.structured = true
			c.reply(o.code, repAck, nil)
		}
	case optListMetaContext, optSetMetaContext:
		c.metaContext(o)
	default: // EXTENDED_HEADERS included: not implemented
		c.replyError(o.code, repErrUnsup, fmt.Sprintf("option %d is not supported", o.code))
	}
	return nil, ExportInfo{}, nil
}

func (c *conn) reply(opt, typ uint32, data []byte) {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], magicOptReply)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	c.bw.Write(h[:])
	c.bw.Write(data)
}

func (c *conn) replyError(opt, typ uint32, msg string) {
	c.s.log.Debug("nbd option refused", "remote", c.info.Remote, "option", opt, "reply", typ&^(1<<31), "msg", msg)
	c.reply(opt, typ, []byte(wireString(msg)))
}

// checkString applies proto.md's rules for strings.
func checkString(b []byte) error {
	switch {
	case len(b) > maxString:
		return fmt.Errorf("string of %d bytes is longer than %d", len(b), maxString)
	case !utf8.Valid(b):
		return errors.New("string is not UTF-8")
	}
	for _, x := range b {
		if x == 0 {
			return errors.New("string contains NUL")
		}
	}
	return nil
}

func (c *conn) exportName(o option) (Export, ExportInfo, error) {
	if err := checkString(o.data); err != nil {
		return nil, ExportInfo{}, fmt.Errorf("nbd: EXPORT_NAME: %w", err)
	}
	name := string(o.data)
	exp, info, err := c.s.opts.Exports.Open(&c.info, name)
	if err == nil && exp == nil {
		err = errNilExport
	}
	if err != nil {
		c.s.log.Info("nbd export refused", "remote", c.info.Remote, "err", err)
		return nil, ExportInfo{}, errHangUp
	}
	c.meta = nil // EXPORT_NAME carries no contexts
	var b [8 + 2 + 124]byte
	binary.BigEndian.PutUint64(b[0:], info.Size)
	binary.BigEndian.PutUint16(b[8:], c.transmissionFlags(info))
	n := len(b)
	if c.clientFlags&flagNoZeroes != 0 {
		n = 10
	}
	c.bw.Write(b[:n])
	return exp, info, nil
}

func (c *conn) list(o option) {
	if len(o.data) != 0 {
		c.replyError(o.code, repErrInvalid, "LIST takes no data")
		return
	}
	entries, err := c.s.opts.Exports.List(&c.info)
	if err != nil {
		code, msg := optionReply(err)
		c.replyError(o.code, code, msg)
		return
	}
	for _, e := range entries {
		if checkString([]byte(e.Name)) != nil || checkString([]byte(e.Description)) != nil {
			continue
		}
		b := binary.BigEndian.AppendUint32(nil, uint32(len(e.Name)))
		b = append(b, e.Name...)
		b = append(b, e.Description...)
		c.reply(o.code, repServer, b)
	}
	c.reply(o.code, repAck, nil)
}

func (c *conn) startTLS(o option) error {
	switch {
	case len(o.data) != 0:
		c.replyError(o.code, repErrInvalid, "STARTTLS takes no data")
		return nil
	case c.s.opts.TLS == nil:
		c.replyError(o.code, repErrPolicy, "TLS is not configured on this server")
		return nil
	case c.info.TLS:
		c.replyError(o.code, repErrInvalid, "TLS is already running")
		return nil
	}
	c.reply(o.code, repAck, nil)
	if err := c.bw.Flush(); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		// Plaintext sent after STARTTLS and before the handshake could
		// be injected by anyone on the path: refuse it.
		return errors.New("nbd: data after STARTTLS before the TLS handshake")
	}
	tc := tls.Server(c.nc, c.s.opts.TLS)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("nbd: TLS handshake: %w", err)
	}
	c.rw = tc
	c.br = bufio.NewReaderSize(tc, handshakeBufferSize)
	c.bw = bufio.NewWriterSize(tc, handshakeBufferSize)
	c.info.TLS = true
	// proto.md: nothing negotiated before STARTTLS survives it.
	c.structured = false
	c.meta, c.metaExport = nil, ""
	return nil
}

// infoOrGo answers INFO and GO: u32 name length, name, u16 count, u16
// information requests.
func (c *conn) infoOrGo(o option) (Export, ExportInfo, error) {
	d := o.data
	if len(d) < 6 {
		c.replyError(o.code, repErrInvalid, "option data too short")
		return nil, ExportInfo{}, nil
	}
	nl := binary.BigEndian.Uint32(d)
	if uint64(nl) > uint64(len(d))-6 {
		c.replyError(o.code, repErrInvalid, "export name length overruns the option")
		return nil, ExportInfo{}, nil
	}
	nameB := d[4 : 4+nl]
	rest := d[4+nl:]
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+2*n {
		c.replyError(o.code, repErrInvalid, "information request count does not match the option length")
		return nil, ExportInfo{}, nil
	}
	if err := checkString(nameB); err != nil {
		c.replyError(o.code, repErrInvalid, "export name: "+err.Error())
		return nil, ExportInfo{}, nil
	}
	var wantName, wantDesc, wantBlockSize bool
	for i := range n {
		switch binary.BigEndian.Uint16(rest[2+2*i:]) {
		case infoName:
			wantName = true
		case infoDescription:
			wantDesc = true
		case infoBlockSize:
			wantBlockSize = true
		}
	}
	name := string(nameB)
	var exp Export
	var info ExportInfo
	var err error
	if o.code == optGo {
		exp, info, err = c.s.opts.Exports.Open(&c.info, name)
		if err == nil && exp == nil {
			err = errNilExport
		}
	} else {
		info, err = c.s.opts.Exports.Describe(&c.info, name)
	}
	if err != nil {
		code, msg := optionReply(err)
		c.replyError(o.code, code, msg)
		return nil, ExportInfo{}, nil
	}
	b := make([]byte, 0, 32)
	b = binary.BigEndian.AppendUint16(b, infoExport)
	b = binary.BigEndian.AppendUint64(b, info.Size)
	b = binary.BigEndian.AppendUint16(b, c.transmissionFlags(info))
	c.reply(o.code, repInfo, b)
	if wantName {
		c.reply(o.code, repInfo, append(binary.BigEndian.AppendUint16(nil, infoName), name...))
	}
	if wantDesc && info.Description != "" && checkString([]byte(info.Description)) == nil {
		c.reply(o.code, repInfo, append(binary.BigEndian.AppendUint16(nil, infoDescription), info.Description...))
	}
	// Sent whether asked or not, as qemu-nbd does; only a client that
	// asked is held to it.
	b = binary.BigEndian.AppendUint16(b[:0], infoBlockSize)
	b = binary.BigEndian.AppendUint32(b, c.s.opts.MinBlock)
	b = binary.BigEndian.AppendUint32(b, c.s.opts.PreferredBlock)
	b = binary.BigEndian.AppendUint32(b, c.s.opts.MaxPayload)
	c.reply(o.code, repInfo, b)
	c.reply(o.code, repAck, nil)
	if o.code == optInfo {
		return nil, ExportInfo{}, nil
	}
	if c.metaExport != name {
		c.meta = nil // contexts chosen for another export do not apply
	}
	c.strictAlign = wantBlockSize
	return exp, info, nil
}

// metaContext answers LIST_META_CONTEXT and SET_META_CONTEXT: u32 name
// length, name, u32 query count, then (u32 length, query) per query.
func (c *conn) metaContext(o option) {
	set := o.code == optSetMetaContext
	if set {
		c.meta, c.metaExport = nil, "" // replaced even when the option fails
	}
	if !c.structured {
		c.replyError(o.code, repErrInvalid, "negotiate STRUCTURED_REPLY first")
		return
	}
	name, queries, err := parseMetaOption(o.data)
	if err != nil {
		c.replyError(o.code, repErrInvalid, err.Error())
		return
	}
	if len(queries) > maxQueries {
		c.replyError(o.code, repErrTooBig, fmt.Sprintf("at most %d queries", maxQueries))
		return
	}
	info, err := c.s.opts.Exports.Describe(&c.info, name)
	if err != nil {
		code, msg := optionReply(err)
		c.replyError(o.code, code, msg)
		return
	}
	if !set {
		for _, ctx := range matchList(info.MetaContexts, queries) {
			c.reply(o.code, repMetaContext, append(binary.BigEndian.AppendUint32(nil, 0), ctx...))
		}
		c.reply(o.code, repAck, nil)
		return
	}
	selected := matchSet(info.MetaContexts, queries)
	for i, ctx := range selected {
		c.reply(o.code, repMetaContext, append(binary.BigEndian.AppendUint32(nil, uint32(i+1)), ctx...))
	}
	c.reply(o.code, repAck, nil)
	c.meta, c.metaExport = selected, name
}

func parseMetaOption(d []byte) (string, []string, error) {
	next := func() ([]byte, error) {
		if len(d) < 4 {
			return nil, errors.New("option data too short")
		}
		n := binary.BigEndian.Uint32(d)
		if uint64(n) > uint64(len(d)-4) {
			return nil, errors.New("a length overruns the option")
		}
		s := d[4 : 4+n]
		d = d[4+n:]
		return s, checkString(s)
	}
	nameB, err := next()
	if err != nil {
		return "", nil, err
	}
	if len(d) < 4 {
		return "", nil, errors.New("option data too short")
	}
	nq := binary.BigEndian.Uint32(d)
	d = d[4:]
	if uint64(nq)*4 > uint64(len(d)) {
		return "", nil, errors.New("query count overruns the option")
	}
	queries := make([]string, 0, nq)
	for range nq {
		q, err := next()
		if err != nil {
			return "", nil, err
		}
		queries = append(queries, string(q))
	}
	if len(d) != 0 {
		return "", nil, errors.New("trailing bytes after the queries")
	}
	return string(nameB), queries, nil
}

// transmissionFlags are what the checklist says: nbdkit's and qemu-nbd's
// 0x0ded for a writable export with structured replies, 0x0d6d without
// (no DF), and qemu-nbd's 0x058f for a read-only one.
func (c *conn) transmissionFlags(info ExportInfo) uint16 {
	f := uint16(tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagCanMultiConn | tflagSendCache)
	if c.structured {
		f |= tflagSendDF
	}
	if info.ReadOnly {
		f |= tflagReadOnly
	} else {
		f |= tflagSendTrim | tflagSendWriteZeroes | tflagSendFastZero
	}
	return f
}
