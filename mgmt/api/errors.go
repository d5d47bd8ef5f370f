package api

import (
	"net/http"

	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// Error is an API failure as it travels: XenAPI's (code, params) pair and
// a message for people, with the HTTP status its Kind maps to. Codes are
// XenAPI's where XenAPI has one, so scripts written against XenServer
// branch the same way.
type Error = fault.Error

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// statusOfKind is the HTTP status each kind answers with on this surface.
var statusOfKind = map[fault.Kind]int{
	fault.Internal:        http.StatusInternalServerError,
	fault.Invalid:         http.StatusBadRequest,
	fault.Unauthenticated: http.StatusUnauthorized,
	fault.Forbidden:       http.StatusForbidden,
	fault.NotFound:        http.StatusNotFound,
	fault.Conflict:        http.StatusConflict,
	fault.TooMany:         http.StatusTooManyRequests,
	fault.TooLarge:        http.StatusRequestEntityTooLarge,
	fault.NoSpace:         http.StatusInsufficientStorage,
	fault.Unavailable:     http.StatusServiceUnavailable,
	fault.NotAllowed:      http.StatusMethodNotAllowed,
}

// Status is the HTTP status an error answers with.
func Status(e *Error) int {
	if s, ok := statusOfKind[e.Kind]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// KindOfStatus is the kind an HTTP status stands for; a client decoding an
// error body sets it from the response's status.
func KindOfStatus(status int) fault.Kind {
	for k, s := range statusOfKind {
		if s == status {
			return k
		}
	}
	if status >= 400 && status < 500 {
		return fault.Invalid
	}
	return fault.Internal
}

// Errorf makes an Error answering with HTTP status. Params are XenAPI's
// parameters for the code.
func Errorf(status int, code string, params []string, format string, args ...any) *Error {
	return fault.New(KindOfStatus(status), code, params, format, args...)
}

// Error codes: fault's, under the names the API has always used.
const (
	CodeInvalidJSON         = fault.CodeInvalidJSON
	CodeUnknownField        = fault.CodeUnknownField
	CodeFieldTypeError      = fault.CodeFieldTypeError
	CodeInvalidValue        = fault.CodeInvalidValue
	CodeRequestTooLarge     = fault.CodeRequestTooLarge
	CodeMethodUnknown       = fault.CodeMethodUnknown
	CodeMethodNotAllowed    = fault.CodeMethodNotAllowed
	CodeAuthFailed          = fault.CodeAuthFailed
	CodeSessionInvalid      = fault.CodeSessionInvalid
	CodePermissionDenied    = fault.CodePermissionDenied
	CodeUUIDInvalid         = fault.CodeUUIDInvalid
	CodeInternal            = fault.CodeInternal
	CodeOperationNotAllowed = fault.CodeOperationNotAllowed
	CodeOtherOperation      = fault.CodeOtherOperation
	CodeVDIInUse            = fault.CodeVDIInUse
	CodeVDIReadOnly         = fault.CodeVDIReadOnly
	CodeVDITooSmall         = fault.CodeVDITooSmall
	CodeVDIIncompatible     = fault.CodeVDIIncompatible
	CodeVDINoCBTMetadata    = fault.CodeVDINoCBTMetadata
	CodeVDICBTEnabled       = fault.CodeVDICBTEnabled
	CodeVDIOnBootMode       = fault.CodeVDIOnBootMode
	CodeVDIIsSharable       = fault.CodeVDIIsSharable
	CodeVDIMissing          = fault.CodeVDIMissing
	CodeLocationNotUnique   = fault.CodeLocationNotUnique
	CodeMapDuplicateKey     = fault.CodeMapDuplicateKey
	CodeSRNotEmpty          = fault.CodeSRNotEmpty
	CodeSROperationNotSupp  = fault.CodeSROperationNotSupp
	CodeChangedBlocks       = fault.CodeChangedBlocks
	CodeShrinkRefused       = fault.CodeShrinkRefused
	CodeCouldNotImportDB    = fault.CodeCouldNotImportDB
	CodeNameTaken           = fault.CodeNameTaken
	CodeLastAdmin           = fault.CodeLastAdmin
	CodeTaskCancelled       = fault.CodeTaskCancelled
	CodeServerShutdown      = fault.CodeServerShutdown
)

// BadRequest is a 400 for input that can never succeed.
func BadRequest(code string, params []string, format string, args ...any) *Error {
	return fault.BadRequest(code, params, format, args...)
}

// InvalidValue is a 400 naming the field and the value refused.
func InvalidValue(field, value, format string, args ...any) *Error {
	return fault.InvalidValue(field, value, format, args...)
}

// Conflict is a 409: the request is well formed but the object's state
// refuses it.
func Conflict(code string, params []string, format string, args ...any) *Error {
	return fault.Conflicts(code, params, format, args...)
}

// NotFound is a 404 for an unknown object of a class ("VDI", "SR", ...).
func NotFound(class, id string) *Error { return fault.Missing(class, id) }
