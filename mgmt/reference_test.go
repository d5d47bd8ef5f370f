package mgmt

import (
	"flag"
	"os"
	"testing"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
	"github.com/vdiskd/vdiskd/mgmt/stats"
	"github.com/vdiskd/vdiskd/mgmt/vstats/vstatsapi"
	"github.com/vdiskd/vdiskd/mgmt/xenapi"
)

var update = flag.Bool("update", false, "rewrite docs/api.md from the tables")

const referencePath = "../docs/api.md"

// The checked-in reference must be what the table generates.
func TestReference(t *testing.T) {
	want := api.Reference() + cinderapi.Reference() + kvolapi.Reference() + vstatsapi.Reference(stats.CatalogueOf(statsMetrics())) +
		xenapi.Reference()
	if *update {
		if err := os.MkdirAll("../docs", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(referencePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v (run: go test ./mgmt -run TestReference -update)", err)
	}
	if string(got) != want {
		t.Fatalf("docs/api.md is stale: run go test ./mgmt -run TestReference -update")
	}
}
