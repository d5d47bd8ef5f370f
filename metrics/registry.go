package metrics

import "sync"

// Registry holds the counters of every vDisk by ID.
type Registry struct {
	mu    sync.RWMutex
	disks map[string]*Counters
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{disks: map[string]*Counters{}} }

// Disk returns the counters of a vDisk, creating them on first use. The
// caller keeps the pointer for its I/O path.
func (r *Registry) Disk(id string) *Counters {
	r.mu.RLock()
	c := r.disks[id]
	r.mu.RUnlock()
	if c != nil {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c = r.disks[id]; c == nil {
		c = &Counters{}
		r.disks[id] = c
	}
	return c
}

// Sample reads a vDisk's counters (zero if it never did I/O).
func (r *Registry) Sample(id string) Sample {
	r.mu.RLock()
	c := r.disks[id]
	r.mu.RUnlock()
	if c == nil {
		return Sample{}
	}
	return c.Sample()
}

// Remove forgets a destroyed vDisk.
func (r *Registry) Remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.disks, id)
}
