package nbd

// Wire constants of the NBD protocol (NetworkBlockDevice doc/proto.md).
// Names follow the document without the NBD_ prefix.

// Handshake.
const (
	magicNBD      = 0x4e42444d41474943 // "NBDMAGIC"
	magicIHaveOpt = 0x49484156454F5054 // "IHAVEOPT"
	magicOptReply = 0x3e889045565a9

	flagFixedNewstyle = 1 << 0 // handshake and client flag
	flagNoZeroes      = 1 << 1 // handshake and client flag
	clientFlagsKnown  = flagFixedNewstyle | flagNoZeroes
)

// Options.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10
	optExtendedHeaders = 11
)

// Option replies. Errors have bit 31 set.
const (
	repAck         = 1
	repServer      = 2
	repInfo        = 3
	repMetaContext = 4

	repErrUnsup         = 1<<31 + 1
	repErrPolicy        = 1<<31 + 2
	repErrInvalid       = 1<<31 + 3
	repErrTLSReqd       = 1<<31 + 5
	repErrUnknown       = 1<<31 + 6
	repErrShutdown      = 1<<31 + 7
	repErrBlockSizeReqd = 1<<31 + 8
	repErrTooBig        = 1<<31 + 9
)

// Information types of INFO and GO.
const (
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3
)

// Transmission flags.
const (
	tflagHasFlags        = 1 << 0
	tflagReadOnly        = 1 << 1
	tflagSendFlush       = 1 << 2
	tflagSendFUA         = 1 << 3
	tflagSendTrim        = 1 << 5
	tflagSendWriteZeroes = 1 << 6
	tflagSendDF          = 1 << 7
	tflagCanMultiConn    = 1 << 8
	tflagSendCache       = 1 << 10
	tflagSendFastZero    = 1 << 11
)

// Transmission messages.
const (
	magicRequest    = 0x25609513
	magicSimple     = 0x67446698
	magicStructured = 0x668e33ef

	requestHeaderLen    = 28
	simpleHeaderLen     = 16
	structuredHeaderLen = 20
)

// Commands.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7
)

// Command flags.
const (
	cmdFlagFUA      = 1 << 0
	cmdFlagNoHole   = 1 << 1
	cmdFlagDF       = 1 << 2
	cmdFlagReqOne   = 1 << 3
	cmdFlagFastZero = 1 << 4
)

// Structured reply chunk flags and types.
const (
	replyFlagDone = 1 << 0

	chunkNone        = 0
	chunkOffsetData  = 1
	chunkOffsetHole  = 2
	chunkBlockStatus = 5
	chunkError       = 1<<15 + 1
	chunkErrorOffset = 1<<15 + 2
)

// Limits on what a client may send during negotiation.
const (
	maxString     = 4096    // proto.md: strings MUST be at most 4096 bytes
	maxOptionData = 1 << 20 // longer option data disconnects; shorter is read and refused
)

// commandName is for logs.
func commandName(t uint16) string {
	switch t {
	case cmdRead:
		return "read"
	case cmdWrite:
		return "write"
	case cmdDisc:
		return "disc"
	case cmdFlush:
		return "flush"
	case cmdTrim:
		return "trim"
	case cmdCache:
		return "cache"
	case cmdWriteZeroes:
		return "write_zeroes"
	case cmdBlockStatus:
		return "block_status"
	}
	return "unknown"
}
