package mgmt

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
)

// state is what the API keeps outside the block store.
type state struct {
	Node   nodeState     `json:"node"`
	Pools  []*poolState  `json:"pools"`
	Users  []*userState  `json:"users"`
	Tokens []*tokenState `json:"tokens"`
}

type nodeState struct {
	GUID    string    `json:"guid"`
	Created time.Time `json:"created"`
}

type poolState struct {
	GUID          string            `json:"guid"`
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	Size          int64             `json:"size"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	StorageDriver string            `json:"storagedriver_guid"`
	Default       bool              `json:"default,omitempty"`
	Created       time.Time         `json:"created"`
}

type userState struct {
	Username string    `json:"username"`
	Hash     string    `json:"hash"` // bcrypt
	Role     api.Role  `json:"role"`
	Created  time.Time `json:"created"`
}

// tokenState keeps a token's SHA-256, never the token: a copy of the file
// grants nothing.
type tokenState struct {
	Hash     string    `json:"sha256"`
	Username string    `json:"username"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`

	nbd *tokenSession // NBD connections opened with it watch this (auth.go); not saved
}

// stateFile persists state by writing a temporary file, syncing it and
// renaming it over the old one, so a crash leaves the old or the new state.
type stateFile struct{ path string }

func (f stateFile) load() (*state, bool, error) {
	buf, err := os.ReadFile(f.path)
	if os.IsNotExist(err) {
		return &state{}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("mgmt: read state: %w", err)
	}
	st := &state{}
	if err := json.Unmarshal(buf, st); err != nil {
		return nil, false, fmt.Errorf("mgmt: state file %s is corrupt: %w", f.path, err)
	}
	return st, true, nil
}

func (f stateFile) save(st *state) error {
	buf, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("mgmt: encode state: %w", err)
	}
	tmp := f.path + ".tmp"
	if err := writeFileSync(tmp, buf, 0o600); err != nil {
		return fmt.Errorf("mgmt: save state: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("mgmt: save state: %w", err)
	}
	return syncDir(filepath.Dir(f.path))
}

func writeFileSync(name string, data []byte, perm os.FileMode) error {
	fh, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (st *state) pool(ref string) *poolState {
	for _, p := range st.Pools {
		if p.GUID == ref {
			return p
		}
	}
	for _, p := range st.Pools {
		if p.Name == ref {
			return p
		}
	}
	return nil
}

func (st *state) defaultPool() *poolState {
	for _, p := range st.Pools {
		if p.Default {
			return p
		}
	}
	return nil
}

func (st *state) user(name string) *userState {
	for _, u := range st.Users {
		if u.Username == name {
			return u
		}
	}
	return nil
}
