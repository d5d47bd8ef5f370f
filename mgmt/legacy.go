package mgmt

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/kv"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// Before the management database, vPools, users and tokens lived in
// <data-dir>/mgmt.json, rewritten whole at every change. The first start
// of this version imports it into the empty database in one commit and
// renames it, so it is read once.
type legacyState struct {
	Node   *node         `json:"node"`
	Pools  []volume.Pool `json:"pools"`
	Users  []auth.User   `json:"users"`
	Tokens []struct {
		Hash     string    `json:"sha256"`
		Username string    `json:"username"`
		Created  time.Time `json:"created"`
		Expires  time.Time `json:"expires"`
	} `json:"tokens"`
}

const importedKey = "imported/mgmt.json"

func importLegacyState(db *kv.DB, dataDir string, log *slog.Logger) error {
	path := filepath.Join(dataDir, "mgmt.json")
	buf, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mgmt: read %s: %w", path, err)
	}
	var done bool
	if _, err := db.Get(importedKey, &done); err != nil {
		return err
	}
	var n node
	inUse, err := db.Get("node", &n)
	if err != nil {
		return err
	}
	if done || inUse {
		// Imported before (a crash before the rename), or written by an
		// older binary started on this directory since: either way the
		// database is the truth; the file is kept, not read.
		kept, err := keepAside(path)
		if err != nil {
			return err
		}
		log.Warn("mgmt.json was not imported: the management database is in use already; the file is kept",
			"file", kept)
		return nil
	}
	var st legacyState
	if err := json.Unmarshal(buf, &st); err != nil {
		return fmt.Errorf("mgmt: state file %s is corrupt: %w", path, err)
	}
	if err := st.check(); err != nil {
		return fmt.Errorf("mgmt: state file %s: %w", path, err)
	}
	b := db.NewBatch()
	if st.Node != nil {
		b.Put("node", st.Node)
	}
	for _, p := range st.Pools {
		b.Put("vpool/"+p.GUID, p)
	}
	for _, u := range st.Users {
		b.Put("user/"+u.Username, u)
	}
	for _, t := range st.Tokens {
		b.Put("token/"+t.Hash, t)
	}
	b.Put(importedKey, true)
	if err := b.Commit(); err != nil {
		return fmt.Errorf("mgmt: importing %s: %w", path, err)
	}
	kept, err := keepAside(path)
	if err != nil {
		return err
	}
	log.Warn("imported the management state of an earlier version", "from", path, "kept_as", kept,
		"pools", len(st.Pools), "users", len(st.Users), "tokens", len(st.Tokens))
	return nil
}

// check refuses records the services could not load, before anything is
// committed.
func (st *legacyState) check() error {
	if st.Node != nil && st.Node.GUID == "" {
		st.Node = nil // a new identity, as the earlier version would have made
	}
	defaults := 0
	for _, p := range st.Pools {
		if p.GUID == "" || p.Name == "" {
			return errors.New("a vPool without guid or name")
		}
		if p.Default {
			defaults++
		}
	}
	if defaults > 1 {
		return fmt.Errorf("%d default vPools", defaults)
	}
	for _, u := range st.Users {
		if u.Username == "" || u.Hash == "" || u.Role == 0 {
			return fmt.Errorf("user %q without name, password hash or role", u.Username)
		}
	}
	for _, t := range st.Tokens {
		if t.Hash == "" || t.Username == "" {
			return errors.New("a token without hash or user")
		}
	}
	return nil
}

// keepAside renames path to path.imported, or to a name with the time if
// that one exists: an earlier file is never overwritten.
func keepAside(path string) (string, error) {
	kept := path + ".imported"
	if _, err := os.Stat(kept); err == nil {
		kept = fmt.Sprintf("%s.ignored-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	}
	if err := os.Rename(path, kept); err != nil {
		return "", fmt.Errorf("mgmt: %w", err)
	}
	return kept, nil
}
