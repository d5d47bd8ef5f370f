package mgmt

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// Before the management database, vPools, users and tokens lived in
// <data-dir>/mgmt.json, rewritten whole at every change. The first start
// of this version imports it in one commit and renames it, so it is read
// once.
type legacyState struct {
	Node   json.RawMessage   `json:"node"`
	Pools  []json.RawMessage `json:"pools"`
	Users  []json.RawMessage `json:"users"`
	Tokens []json.RawMessage `json:"tokens"`
}

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
	if _, err := db.Get("imported/mgmt.json", &done); err != nil {
		return err
	}
	if !done {
		var st legacyState
		if err := json.Unmarshal(buf, &st); err != nil {
			return fmt.Errorf("mgmt: state file %s is corrupt: %w", path, err)
		}
		b := db.NewBatch()
		if len(st.Node) > 0 {
			b.Put("node", st.Node)
		}
		for _, group := range []struct {
			prefix, key string
			recs        []json.RawMessage
		}{{"vpool/", "guid", st.Pools}, {"user/", "username", st.Users}, {"token/", "sha256", st.Tokens}} {
			for _, r := range group.recs {
				var keyed map[string]any
				if err := json.Unmarshal(r, &keyed); err != nil {
					return fmt.Errorf("mgmt: state file %s is corrupt: %w", path, err)
				}
				id, _ := keyed[group.key].(string)
				if id == "" {
					return fmt.Errorf("mgmt: state file %s: a record under %s has no %s", path, group.prefix, group.key)
				}
				b.Put(group.prefix+id, r)
			}
		}
		b.Put("imported/mgmt.json", true)
		if err := b.Commit(); err != nil {
			return fmt.Errorf("mgmt: importing %s: %w", path, err)
		}
		log.Warn("imported the management state of an earlier version", "from", path,
			"pools", len(st.Pools), "users", len(st.Users), "tokens", len(st.Tokens))
	}
	if err := os.Rename(path, path+".imported"); err != nil {
		return fmt.Errorf("mgmt: %w", err)
	}
	return nil
}
