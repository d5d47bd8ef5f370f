package api

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxVirtualSize is the largest VDI: 2^48 bytes, 2^32 CBT blocks of 64 KiB
// (the block store's limit; a test keeps the two equal).
const MaxVirtualSize = 1 << 48

// Limits on strings, so a record stays a record.
const (
	MaxNameLen  = 1024
	MaxKeyLen   = 256
	MaxValueLen = 16 << 10
	MaxEntries  = 256
)

// PageArgs are OVS's list parameters.
type PageArgs struct {
	Page     int    `query:"page" doc:"page number, from 1; absent or 0: every item on one page"`
	PageSize int    `query:"page_size" doc:"items per page when page is given (default 10, at most 1000)"`
	Sort     string `query:"sort" doc:"comma-separated fields, a leading - for descending: sort=name_label,-virtual_size"`
}

// Validate checks the ranges.
func (p PageArgs) Validate() *Error {
	if p.Page < 0 {
		return InvalidValue("page", fmt.Sprint(p.Page), "must be 0 or more")
	}
	if p.PageSize < 0 || p.PageSize > 1000 {
		return InvalidValue("page_size", fmt.Sprint(p.PageSize), "must be 1 to 1000")
	}
	return nil
}

// checkName refuses over-long or invalid text fields.
func checkName(field, s string) *Error {
	if len(s) > MaxNameLen {
		return InvalidValue(field, s[:32]+"...", "longer than %d bytes", MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return InvalidValue(field, s, "not valid UTF-8")
	}
	return nil
}

func checkMap(field string, m map[string]string) *Error {
	if len(m) > MaxEntries {
		return InvalidValue(field, fmt.Sprint(len(m)), "more than %d entries", MaxEntries)
	}
	for k, v := range m {
		if err := checkKey(field, k); err != nil {
			return err
		}
		if len(v) > MaxValueLen {
			return InvalidValue(field, k, "value longer than %d bytes", MaxValueLen)
		}
	}
	return nil
}

func checkKey(field, k string) *Error {
	if k == "" {
		return InvalidValue(field, k, "keys must not be empty")
	}
	if len(k) > MaxKeyLen {
		return InvalidValue(field, k[:32]+"...", "key longer than %d bytes", MaxKeyLen)
	}
	return nil
}

func checkTags(field string, tags []string) *Error {
	if len(tags) > MaxEntries {
		return InvalidValue(field, fmt.Sprint(len(tags)), "more than %d tags", MaxEntries)
	}
	for _, t := range tags {
		if err := checkKey(field, t); err != nil {
			return err
		}
	}
	return nil
}

func checkEnum(field, v string, allowed []string) *Error {
	if !slices.Contains(allowed, v) {
		return InvalidValue(field, v, "must be one of %s", strings.Join(allowed, ", "))
	}
	return nil
}

// CheckSize refuses sizes a VDI cannot have.
func CheckSize(field string, size int64) *Error {
	if size <= 0 {
		return InvalidValue(field, fmt.Sprint(size), "must be a positive number of bytes")
	}
	if size > MaxVirtualSize {
		return InvalidValue(field, fmt.Sprint(size), "exceeds the largest VDI, %d bytes (256 TiB)", int64(MaxVirtualSize))
	}
	return nil
}

// firstError returns the first non-nil error.
func firstError(errs ...*Error) *Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
