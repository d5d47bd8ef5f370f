package deptest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/vdiskd/vdiskd"

// dataPath are the packages whose code runs on a guest's I/O.
var dataPath = []string{module + "/blockstore", module + "/cbt", module + "/nbd"}

// forbidden maps an import path (or prefix ending in "/") to why.
var forbidden = map[string]string{
	"net/http":                       "HTTP belongs to mgmt and metrics",
	"github.com/prometheus/":         "metrics read the data path, not the other way round",
	module + "/mgmt":                 "management calls into the data path",
	module + "/metrics":              "metrics are collected from outside",
	"github.com/gorilla/":            "routing belongs to mgmt",
	"github.com/pojntfx/go-nbd":      "the NBD server is our own",
	"github.com/digitalocean/go-nbd": "a client, for tests only",
}

type pkg struct {
	ImportPath string
	Imports    []string
}

// TestDataPathImports walks every package of this module reachable from the
// data path and checks its direct imports. (pebble itself imports
// prometheus and, through it, net/http; that is pebble's business.)
func TestDataPathImports(t *testing.T) {
	args := append([]string{"list", "-deps", "-json"}, dataPath...)
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.ImportPath, module+"/") {
			continue
		}
		checked++
		for _, imp := range p.Imports {
			for bad, why := range forbidden {
				if imp == bad || (strings.HasSuffix(bad, "/") && strings.HasPrefix(imp, bad)) {
					t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
				}
			}
		}
	}
	if checked < len(dataPath) {
		t.Fatalf("checked %d packages of the module, want at least %d", checked, len(dataPath))
	}
}
