package fault

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
	CodeSRFull              = "SR_FULL"
	CodeChangedBlocks       = "SR_BACKEND_FAILURE_460" // sm: "Failed to calculate changed blocks for given VDIs"
	CodeShrinkRefused       = "SR_BACKEND_FAILURE_79"  // sm: "VDI Invalid size", shrinking not allowed
	CodeCouldNotImportDB    = "COULD_NOT_IMPORT_DATABASE"
	CodeNameTaken           = "NAME_ALREADY_EXISTS"
	CodeLastAdmin           = "LAST_POOL_ADMIN"
	CodeTaskCancelled       = "TASK_CANCELLED"
	CodeServerShutdown      = "SERVER_SHUTTING_DOWN"
)

// Codes of the group calls, which XenAPI has no case for: Cinder's
// exception names.
const (
	CodeInvalidGroup         = "InvalidConsistencyGroup"
	CodeInvalidGroupSnapshot = "InvalidCgSnapshot"
	CodeInvalidVolume        = "InvalidVolume"
	CodeInvalidVolumeType    = "InvalidVolumeType"
)
