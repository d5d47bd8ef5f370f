package mgmt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"golang.org/x/crypto/bcrypt"
)

// A data directory of an earlier version keeps its vPools, users, tokens
// and node identity in mgmt.json. The first start imports them, once: the
// old token still works, the users log in, the vPools and the node guid
// are the same, and mgmt.json is renamed so it is never read again.
func TestImportsMgmtJSON(t *testing.T) {
	const oldToken = "vdt_an-old-token-from-mgmt-json"
	sum := sha256.Sum256([]byte(oldToken))
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	legacy := map[string]any{
		"node": map[string]any{"guid": "11111111-2222-3333-4444-555555555555", "created": created},
		"pools": []any{
			map[string]any{"guid": "p-local", "name": "local", "description": "LOCAL local", "storagedriver_guid": "sd1", "default": true, "created": created},
			map[string]any{"guid": "p-fast", "name": "fast", "description": "x", "size": 1 << 30, "storagedriver_guid": "sd2", "created": created},
		},
		"users": []any{
			map[string]any{"username": "admin", "hash": hash(adminPassword), "role": "pool-admin", "created": created},
			map[string]any{"username": "bob", "hash": hash("bob-password"), "role": "vm-admin", "created": created},
		},
		"tokens": []any{
			map[string]any{"sha256": hex.EncodeToString(sum[:]), "username": "bob", "created": created,
				"expires": time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)},
		},
	}
	buf, _ := json.Marshal(legacy)
	var dataDir string
	e := newEnvWith(t, func(o *Options) {
		dataDir = o.DataDir
		if _, err := os.Stat(filepath.Join(dataDir, "mgmt.json.imported")); err == nil {
			return // a restart: nothing to import any more
		}
		if err := os.WriteFile(filepath.Join(dataDir, "mgmt.json"), buf, 0o600); err != nil {
			t.Fatal(err)
		}
	})
	check := func() {
		t.Helper()
		var pools api.List[api.VPool]
		e.must(http.StatusOK, "GET", "/api/vpools", oldToken, nil, &pools)
		if len(pools.Data) != 2 || pools.Data[0].Name != "fast" || pools.Data[0].GUID != "p-fast" || pools.Data[1].GUID != "p-local" {
			t.Fatalf("vPools after the import: %+v", pools.Data)
		}
		var routers api.List[api.StorageRouter]
		e.must(http.StatusOK, "GET", "/api/vpools/local/storagerouters", oldToken, nil, &routers)
		if routers.Data[0].GUID != "11111111-2222-3333-4444-555555555555" {
			t.Fatalf("the node's guid changed: %s", routers.Data[0].GUID)
		}
		e.login("bob", "bob-password")
	}
	check()
	if _, err := os.Stat(filepath.Join(dataDir, "mgmt.json")); !os.IsNotExist(err) {
		t.Fatalf("mgmt.json is still there after the import (%v)", err)
	}
	var users api.List[api.User]
	e.must(http.StatusOK, "GET", "/api/users", e.admin, nil, &users)
	if len(users.Data) != 2 || users.Data[1].Username != "bob" || users.Data[1].Role != api.VMAdmin {
		t.Fatalf("users after the import: %+v", users.Data)
	}
	e.restart()
	check()
}

// A mgmt.json that appears once the database is in use (an older binary
// started on the directory since) is kept aside, not read: the database
// stays the truth. One whose records could not load is refused before
// anything is committed.
func TestMgmtJSONIsImportedOnlyIntoAnEmptyDatabase(t *testing.T) {
	e := newEnv(t)
	stray := []byte(`{"node":{"guid":"x"},"pools":[],"users":[{"username":"mallory","hash":"h","role":"pool-admin"}],"tokens":[]}`)
	if err := os.WriteFile(filepath.Join(e.dataDir, "mgmt.json"), stray, 0o600); err != nil {
		t.Fatal(err)
	}
	e.restart()
	e.fails(http.StatusNotFound, api.CodeUUIDInvalid, "GET", "/api/users/mallory", e.admin, nil)
	if kept, err := os.ReadFile(filepath.Join(e.dataDir, "mgmt.json.imported")); err != nil || string(kept) != string(stray) {
		t.Fatalf("the stray file was not kept aside: %v", err)
	}

	bad := []byte(`{"users":[{"username":"bob","hash":"h","role":"emperor"}]}`)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mgmt.json"), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := New(Options{Store: e.store, DataDir: dir, AdminPassword: adminPassword}); err == nil {
		s.Close()
		t.Fatal("a mgmt.json with an unknown role was imported")
	}
	if _, err := os.Stat(filepath.Join(dir, "mgmt.json")); err != nil {
		t.Fatalf("the refused mgmt.json was moved: %v", err)
	}
}
