package nbdtest

// Wire constants of the NBD protocol (NetworkBlockDevice doc/proto.md),
// named as there without the NBD_ prefix. They are this package's own, not
// package nbd's: the client checks the server against the document, not
// against the server's idea of it.

// Handshake.
const (
	MagicNBD      = 0x4e42444d41474943 // "NBDMAGIC"
	MagicIHaveOpt = 0x49484156454F5054 // "IHAVEOPT"
	MagicOptReply = 0x3e889045565a9

	FlagFixedNewstyle = 1 << 0 // handshake and client flag
	FlagNoZeroes      = 1 << 1 // handshake and client flag
)

// Options.
const (
	OptExportName      = 1
	OptAbort           = 2
	OptList            = 3
	OptStartTLS        = 5
	OptInfo            = 6
	OptGo              = 7
	OptStructuredReply = 8
	OptListMetaContext = 9
	OptSetMetaContext  = 10
)

// Option replies; errors have bit 31 set.
const (
	RepAck         = 1
	RepServer      = 2
	RepInfo        = 3
	RepMetaContext = 4

	RepErrUnsup         = 1<<31 + 1
	RepErrPolicy        = 1<<31 + 2
	RepErrInvalid       = 1<<31 + 3
	RepErrPlatform      = 1<<31 + 4
	RepErrTLSReqd       = 1<<31 + 5
	RepErrUnknown       = 1<<31 + 6
	RepErrShutdown      = 1<<31 + 7
	RepErrBlockSizeReqd = 1<<31 + 8
	RepErrTooBig        = 1<<31 + 9
)

// Information types of INFO and GO.
const (
	InfoExport      = 0
	InfoName        = 1
	InfoDescription = 2
	InfoBlockSize   = 3
)

// Transmission flags.
const (
	TFlagHasFlags        = 1 << 0
	TFlagReadOnly        = 1 << 1
	TFlagSendFlush       = 1 << 2
	TFlagSendFUA         = 1 << 3
	TFlagRotational      = 1 << 4
	TFlagSendTrim        = 1 << 5
	TFlagSendWriteZeroes = 1 << 6
	TFlagSendDF          = 1 << 7
	TFlagCanMultiConn    = 1 << 8
	TFlagSendCache       = 1 << 10
	TFlagSendFastZero    = 1 << 11
)

// Transmission messages.
const (
	MagicRequest    = 0x25609513
	MagicSimple     = 0x67446698
	MagicStructured = 0x668e33ef

	RequestHeaderLen = 28
)

// Commands.
const (
	CmdRead        = 0
	CmdWrite       = 1
	CmdDisc        = 2
	CmdFlush       = 3
	CmdTrim        = 4
	CmdCache       = 5
	CmdWriteZeroes = 6
	CmdBlockStatus = 7
)

// Command flags.
const (
	CmdFlagFUA      = 1 << 0
	CmdFlagNoHole   = 1 << 1
	CmdFlagDF       = 1 << 2
	CmdFlagReqOne   = 1 << 3
	CmdFlagFastZero = 1 << 4
)

// Structured reply chunk flags and types.
const (
	ReplyFlagDone = 1 << 0

	ChunkNone        = 0
	ChunkOffsetData  = 1
	ChunkOffsetHole  = 2
	ChunkBlockStatus = 5
	ChunkError       = 1<<15 + 1
	ChunkErrorOffset = 1<<15 + 2
)

// Error values of replies (proto.md: Linux's numbers).
const (
	EPERM     = 1
	EIO       = 5
	ENOMEM    = 12
	EINVAL    = 22
	ENOSPC    = 28
	EOVERFLOW = 75
	ENOTSUP   = 95
	ESHUTDOWN = 108
)

// MaxString is the longest string proto.md allows.
const MaxString = 4096
