package api

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Error is an API failure as it travels: an HTTP status plus XenAPI's
// (code, params) pair and a message for people. Codes are XenAPI's where
// XenAPI has one, so scripts written against XenServer branch the same way.
type Error struct {
	Status  int      `json:"-"`
	Code    string   `json:"code"`
	Params  []string `json:"params"`
	Message string   `json:"message"`
	// RetryAfter, when set, is sent as the Retry-After header (429, 503).
	RetryAfter time.Duration `json:"-"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

func (e *Error) Error() string {
	if len(e.Params) == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s [%s]: %s", e.Code, strings.Join(e.Params, ", "), e.Message)
}

// Errorf makes an Error. Params are XenAPI's parameters for the code.
func Errorf(status int, code string, params []string, format string, args ...any) *Error {
	if params == nil {
		params = []string{}
	}
	return &Error{Status: status, Code: code, Params: params, Message: fmt.Sprintf(format, args...)}
}

// Error codes. XenAPI's names where XenAPI has the case; the few of our own
// (bad JSON, unknown fields, body too large) follow the same style.
const (
	CodeInvalidJSON         = "INVALID_JSON"
	CodeUnknownField        = "UNKNOWN_FIELD"
	CodeFieldTypeError      = "FIELD_TYPE_ERROR"
	CodeInvalidValue        = "INVALID_VALUE"
	CodeRequestTooLarge     = "REQUEST_TOO_LARGE"
	CodeMethodUnknown       = "MESSAGE_METHOD_UNKNOWN"
	CodeMethodNotAllowed    = "MESSAGE_METHOD_NOT_ALLOWED"
	CodeAuthFailed          = "SESSION_AUTHENTICATION_FAILED"
	CodeSessionInvalid      = "SESSION_INVALID"
	CodePermissionDenied    = "RBAC_PERMISSION_DENIED"
	CodeUUIDInvalid         = "UUID_INVALID"
	CodeInternal            = "INTERNAL_ERROR"
	CodeOperationNotAllowed = "OPERATION_NOT_ALLOWED"
	CodeOtherOperation      = "OTHER_OPERATION_IN_PROGRESS"
	CodeVDIInUse            = "VDI_IN_USE"
	CodeVDIReadOnly         = "VDI_READONLY"
	CodeVDITooSmall         = "VDI_TOO_SMALL"
	CodeVDIIncompatible     = "VDI_INCOMPATIBLE_TYPE"
	CodeVDINoCBTMetadata    = "VDI_NO_CBT_METADATA"
	CodeVDICBTEnabled       = "VDI_CBT_ENABLED"
	CodeVDIOnBootMode       = "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION"
	CodeVDIIsSharable       = "VDI_IS_SHARABLE"
	CodeVDIMissing          = "VDI_MISSING"
	CodeLocationNotUnique   = "LOCATION_NOT_UNIQUE"
	CodeMapDuplicateKey     = "MAP_DUPLICATE_KEY"
	CodeSRNotEmpty          = "SR_NOT_EMPTY"
	CodeSROperationNotSupp  = "SR_OPERATION_NOT_SUPPORTED"
	CodeChangedBlocks       = "SR_BACKEND_FAILURE_460" // sm: "Failed to calculate changed blocks for given VDIs"
	CodeShrinkRefused       = "SR_BACKEND_FAILURE_79"  // sm: "VDI Invalid size", shrinking not allowed
	CodeCouldNotImportDB    = "COULD_NOT_IMPORT_DATABASE"
	CodeNameTaken           = "NAME_ALREADY_EXISTS"
	CodeLastAdmin           = "LAST_POOL_ADMIN"
	CodeTaskCancelled       = "TASK_CANCELLED"
	CodeServerShutdown      = "SERVER_SHUTTING_DOWN"
)

// BadRequest is a 400 for input that can never succeed.
func BadRequest(code string, params []string, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, code, params, format, args...)
}

// InvalidValue is a 400 naming the field and the value refused.
func InvalidValue(field, value, format string, args ...any) *Error {
	return BadRequest(CodeInvalidValue, []string{field, value}, "%s: %s", field, fmt.Sprintf(format, args...))
}

// Conflict is a 409: the request is well formed but the object's state
// refuses it.
func Conflict(code string, params []string, format string, args ...any) *Error {
	return Errorf(http.StatusConflict, code, params, format, args...)
}

// NotFound is a 404 for an unknown object of a class ("VDI", "SR", ...).
func NotFound(class, id string) *Error {
	return Errorf(http.StatusNotFound, CodeUUIDInvalid, []string{class, id}, "no %s %q", class, id)
}
