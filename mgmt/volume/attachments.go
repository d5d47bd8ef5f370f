package volume

import (
	"slices"
	"strings"
)

// Attachment is what XenAPI's VBD record shows of an attachment: a
// client (an NBD connection) using a VDI.
type Attachment struct {
	UUID     string
	VDI      string
	User     string
	Writable bool
}

// Attachments lists every current attachment of visible VDIs, by VDI
// then uuid.
func (s *Service) Attachments() []Attachment {
	var out []Attachment
	for _, e := range s.entries() {
		out = append(out, s.attachmentsOf(e)...)
	}
	slices.SortFunc(out, func(a, b Attachment) int {
		if c := strings.Compare(a.VDI, b.VDI); c != 0 {
			return c
		}
		return strings.Compare(a.UUID, b.UUID)
	})
	return out
}

// Attachment finds a current attachment of a visible VDI by its uuid.
func (s *Service) Attachment(id string) (Attachment, bool) {
	s.mu.RLock()
	vdi := s.attached[id]
	s.mu.RUnlock()
	e := s.entry(vdi)
	if e == nil {
		return Attachment{}, false
	}
	for _, a := range s.attachmentsOf(e) {
		if a.UUID == id {
			return a, true
		}
	}
	return Attachment{}, false
}

func (s *Service) attachmentsOf(e *entry) []Attachment {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.shown.Load() {
		return nil
	}
	out := make([]Attachment, 0, len(e.vbds))
	for _, b := range e.vbds {
		out = append(out, Attachment{UUID: b.UUID, VDI: e.id, User: b.User, Writable: b.Writable})
	}
	return out
}
