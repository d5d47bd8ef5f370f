package volume

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// Pool is a vPool: a key space of the store that VDIs live in.
type Pool struct {
	GUID          string            `json:"guid"`
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	Size          int64             `json:"size"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	StorageDriver string            `json:"storagedriver_guid"`
	Default       bool              `json:"default,omitempty"`
	Created       time.Time         `json:"created"`
}

const poolPrefix = "vpool/"

// pools is the vPool registry.
type pools struct {
	db *kv.DB
	// inUse is held shared by every call that puts a volume into a pool
	// (create, migrate), across its store commit, and exclusively by pool
	// creation and deletion: so a pool is never deleted under a VDI being
	// made in it.
	inUse sync.RWMutex
	mu    sync.RWMutex // guards byGUID
	byID  map[string]*Pool
}

func (p *pools) load(db *kv.DB, now func() time.Time) error {
	p.db, p.byID = db, map[string]*Pool{}
	err := kv.ScanJSON(db, poolPrefix, func(_ string, pl *Pool) error {
		p.byID[pl.GUID] = pl
		return nil
	})
	if err != nil {
		return err
	}
	if p.defaultPool() != nil {
		return nil
	}
	pl := &Pool{GUID: uuid.NewString(), Name: "local", Description: "LOCAL local",
		StorageDriver: uuid.NewString(), Default: true, Created: now().UTC()}
	if err := db.Put(poolPrefix+pl.GUID, pl); err != nil {
		return fmt.Errorf("volume: creating the default vPool: %w", err)
	}
	p.byID[pl.GUID] = pl
	return nil
}

func (p *pools) defaultPool() *Pool {
	for _, pl := range p.byID {
		if pl.Default {
			return pl
		}
	}
	return nil
}

// find resolves a guid, then a name.
func (p *pools) find(ref string) *Pool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if pl := p.byID[ref]; pl != nil {
		return pl
	}
	for _, pl := range p.byID {
		if pl.Name == ref {
			return pl
		}
	}
	return nil
}

// Pools lists the vPools by name.
func (s *Service) Pools() []Pool {
	s.pools.mu.RLock()
	out := make([]Pool, 0, len(s.pools.byID))
	for _, pl := range s.pools.byID {
		out = append(out, *pl)
	}
	s.pools.mu.RUnlock()
	slices.SortFunc(out, func(a, b Pool) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Pool resolves a vPool reference: guid or name; "" is the default.
// class names the object in the not-found error ("SR" or "vPool").
func (s *Service) Pool(ref, class string) (Pool, *fault.Error) {
	if ref == "" {
		s.pools.mu.RLock()
		defer s.pools.mu.RUnlock()
		return *s.pools.defaultPool(), nil
	}
	pl := s.pools.find(ref)
	if pl == nil {
		return Pool{}, fault.Missing(class, ref)
	}
	return *pl, nil
}

// NewPool describes a vPool to create.
type NewPool struct {
	Name, Description string
	Size              int64
	Metadata          map[string]string
}

// CreatePool adds a vPool; names are unique.
func (s *Service) CreatePool(req NewPool) (Pool, error) {
	s.pools.inUse.Lock()
	defer s.pools.inUse.Unlock()
	if s.pools.find(req.Name) != nil {
		return Pool{}, fault.Conflicts(fault.CodeNameTaken, []string{"vPool", req.Name}, "a vPool named %q exists", req.Name)
	}
	pl := &Pool{GUID: uuid.NewString(), Name: req.Name, Description: req.Description, Size: req.Size,
		Metadata: req.Metadata, StorageDriver: uuid.NewString(), Created: s.opts.Now().UTC()}
	if err := s.pools.db.Put(poolPrefix+pl.GUID, pl); err != nil {
		return Pool{}, fault.Internalf(nil, "saving vPool %s: %v", req.Name, err)
	}
	s.pools.mu.Lock()
	s.pools.byID[pl.GUID] = pl
	s.pools.mu.Unlock()
	s.feed.note(pl.GUID)
	s.log.Info("vPool created", "pool", pl.Name, "guid", pl.GUID)
	return *pl, nil
}

// DeletePool removes an empty vPool; the default one stays.
func (s *Service) DeletePool(ref string) error {
	s.pools.inUse.Lock()
	defer s.pools.inUse.Unlock()
	pl := s.pools.find(ref)
	if pl == nil {
		return fault.Missing("vPool", ref)
	}
	if pl.Default {
		return fault.Conflicts(fault.CodeOperationNotAllowed, []string{"the default vPool cannot be deleted"},
			"vPool %s is the default; VDIs created without SR go there", pl.Name)
	}
	if guard := s.poolGuard.Load(); guard != nil {
		if err := (*guard)(pl.GUID); err != nil {
			return err
		}
	}
	if g := s.groupUsingPool(pl.GUID); g != "" {
		return fault.Conflicts(fault.CodeOperationNotAllowed, []string{"the vPool is a volume type of consistency group " + g},
			"vPool %s is a volume type of consistency group %s; delete the group first", pl.Name, g)
	}
	held, hidden := s.countInPool(pl.GUID)
	if held > 0 {
		return fault.Conflicts(fault.CodeSRNotEmpty, []string{pl.GUID},
			"vPool %s holds %d volumes (%d of them forgotten VDIs or on_boot bases); destroy or migrate them first", pl.Name, held, hidden)
	}
	if err := s.pools.db.Delete(poolPrefix + pl.GUID); err != nil {
		return fault.Internalf(nil, "deleting vPool %s: %v", pl.Name, err)
	}
	s.pools.mu.Lock()
	delete(s.pools.byID, pl.GUID)
	s.pools.mu.Unlock()
	s.feed.note(pl.GUID)
	s.log.Info("vPool deleted", "pool", pl.Name)
	return nil
}

// countInPool counts a pool's volumes, and of them the hidden ones.
func (s *Service) countInPool(guid string) (held, hidden int) {
	s.eachInPool(guid, func(e *entry) {
		held++
		if !e.attrs.Lifecycle.Visible() {
			hidden++
		}
	})
	return held, hidden
}

// PoolMembers lists every volume of a pool, hidden ones included, sorted.
func (s *Service) PoolMembers(guid string) []string {
	var out []string
	s.eachInPool(guid, func(e *entry) { out = append(out, e.id) })
	slices.Sort(out)
	return out
}

// eachInPool calls fn, with the volume's lock held, for every volume of a
// pool, hidden ones included.
func (s *Service) eachInPool(guid string, fn func(e *entry)) {
	for _, e := range s.entries() {
		e.mu.Lock()
		if !e.gone && e.info.Pool == guid {
			fn(e)
		}
		e.mu.Unlock()
	}
}

// GuardPoolDelete makes DeletePool refuse a vPool for which inUse answers
// an error (a replication relation replicates it).
func (s *Service) GuardPoolDelete(inUse func(guid string) *fault.Error) { s.poolGuard.Store(&inUse) }
