package nbd

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Errno is an NBD error value. Backends return one (or wrap one) to choose
// what the client sees; any other error is EIO, except the system's
// ENOSPC, EDQUOT and EFBIG, which proto.md maps to ENOSPC.
type Errno uint32

// The error values of proto.md.
const (
	EPERM     Errno = 1
	EIO       Errno = 5
	ENOMEM    Errno = 12
	EINVAL    Errno = 22
	ENOSPC    Errno = 28
	EOVERFLOW Errno = 75
	ENOTSUP   Errno = 95
	ESHUTDOWN Errno = 108
)

func (e Errno) Error() string {
	switch e {
	case EPERM:
		return "operation not permitted"
	case EIO:
		return "input/output error"
	case ENOMEM:
		return "cannot allocate memory"
	case EINVAL:
		return "invalid argument"
	case ENOSPC:
		return "no space left on device"
	case EOVERFLOW:
		return "value too large"
	case ENOTSUP:
		return "operation not supported"
	case ESHUTDOWN:
		return "server is shutting down"
	}
	return fmt.Sprintf("nbd error %d", uint32(e))
}

// errnoOf maps a backend error to the value on the wire.
func errnoOf(err error) Errno {
	var e Errno
	if errors.As(err, &e) {
		return e
	}
	var se syscall.Errno
	if errors.As(err, &se) {
		switch se {
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
			return ENOSPC
		case syscall.EPERM, syscall.EROFS:
			return EPERM
		}
	}
	return EIO
}

// ErrEnough stops a BlockStatus walk early without an error.
var ErrEnough = errors.New("nbd: enough extents")

// OptionError refuses an option during negotiation with a specific reply
// (ERR_UNKNOWN, ERR_POLICY, ...) and a message for the client.
type OptionError struct {
	reply   uint32
	Message string
}

func (e *OptionError) Error() string { return e.Message }

// UnknownExport refuses an export name: the client sees ERR_UNKNOWN. Use
// it for names that do not exist and for names the client may not use,
// so that a refusal reveals nothing.
func UnknownExport(format string, args ...any) error {
	return &OptionError{reply: repErrUnknown, Message: fmt.Sprintf(format, args...)}
}

// PolicyRefusal refuses an option for policy reasons: ERR_POLICY.
func PolicyRefusal(format string, args ...any) error {
	return &OptionError{reply: repErrPolicy, Message: fmt.Sprintf(format, args...)}
}

// optionReply maps an Exports error to a negotiation error reply.
func optionReply(err error) (uint32, string) {
	var oe *OptionError
	if errors.As(err, &oe) {
		return oe.reply, oe.Message
	}
	return repErrUnknown, "unknown export"
}

// wireString makes an error message a string as proto.md defines it:
// UTF-8, no NUL, at most maxString bytes (cut at a character boundary).
func wireString(msg string) string {
	msg = strings.ReplaceAll(strings.ToValidUTF8(msg, "\uFFFD"), "\x00", "")
	if len(msg) > maxString {
		cut := maxString
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	return msg
}
