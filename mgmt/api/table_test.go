package api

import (
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every call has a unique name and a unique method+path, path variables
// match the argument struct, and GET calls take no body arguments.
func TestTableIsConsistent(t *testing.T) {
	names, routes := map[string]bool{}, map[string]string{}
	varRE := regexp.MustCompile(`\{(\w+)\}`)
	for _, r := range All() {
		if names[r.Name()] {
			t.Errorf("%s declared twice", r.Name())
		}
		names[r.Name()] = true
		for _, m := range r.Methods {
			key := m + " " + r.Path
			if other, dup := routes[key]; dup {
				t.Errorf("%s and %s share %s", r.Name(), other, key)
			}
			routes[key] = r.Name()
		}
		if r.Role < ReadOnly || r.Role > PoolAdmin {
			t.Errorf("%s has no minimum role", r.Name())
		}
		var pathArgs []string
		for _, a := range r.Arguments() {
			switch a.Source {
			case FromPath:
				pathArgs = append(pathArgs, a.Name)
			case FromBody:
				if r.Method() == http.MethodGet || r.Method() == http.MethodDelete {
					t.Errorf("%s: %s has body argument %s", r.Name(), r.Method(), a.Name)
				}
			}
		}
		var vars []string
		for _, m := range varRE.FindAllStringSubmatch(r.Path, -1) {
			vars = append(vars, m[1])
		}
		if !slices.Equal(vars, pathArgs) {
			t.Errorf("%s: path variables %v, arguments %v", r.Name(), vars, pathArgs)
		}
	}
}

// Every RPC of seed 003 is served by some call, with the seed's minimum
// role. testdata/seed003_roles.txt lists them (extracted from the seed).
func TestEverySeedRPCIsServed(t *testing.T) {
	seed, err := os.ReadFile("testdata/seed003_roles.txt")
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]Role{}
	for _, r := range All() {
		if r.Class == "VDI" {
			for _, x := range r.XenAPI {
				served[x] = r.Role
			}
		}
	}
	n := 0
	for _, line := range strings.Split(string(seed), "\n") {
		name, role, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		got, ok := served[name]
		switch {
		case !ok:
			t.Errorf("seed RPC %s is not served", name)
		case got.String() != role:
			t.Errorf("%s: minimum role %s, seed says %s", name, got, role)
		}
	}
	if n < 70 {
		t.Fatalf("only %d RPCs read from the seed list", n)
	}
}

// The VDI record has every field of seed 003, and statistics every key of
// seed 000.
func TestRecordsMatchSeeds(t *testing.T) {
	var fields []string
	rt := reflect.TypeFor[VDI]()
	for i := 0; i < rt.NumField(); i++ {
		n, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		fields = append(fields, n)
	}
	want := []string{"allow_caching", "allowed_operations", "cbt_enabled", "crash_dumps", "current_operations",
		"is_a_snapshot", "is_tools_iso", "location", "managed", "metadata_latest", "metadata_of_pool", "missing",
		"name_description", "name_label", "on_boot", "other_config", "parent", "physical_utilisation", "read_only",
		"sharable", "sm_config", "snapshot_of", "snapshot_time", "snapshots", "SR", "storage_lock", "tags", "type",
		"uuid", "VBDs", "virtual_size", "xenstore_data"}
	for _, w := range want {
		if !slices.Contains(fields, w) {
			t.Errorf("VDI record lacks %s", w)
		}
	}
	stat := []string{"operations", "cluster_cache_misses", "data_read", "sco_cache_misses", "sco_cache_hits",
		"write_operations", "backend_write_operations", "backend_data_read", "cache_hits", "metadata_store_misses",
		"backend_data_written", "read_operations", "cluster_cache_hits", "metadata_store_hits",
		"backend_read_operations", "data_written", "data_transferred"}
	for _, k := range stat {
		if !slices.Contains(StatKeys, k) {
			t.Errorf("StatKeys lacks %s", k)
		}
	}
	if len(StatKeys) != len(stat) {
		t.Errorf("StatKeys has %d keys, seed 000 has %d", len(StatKeys), len(stat))
	}
}
