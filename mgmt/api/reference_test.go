package api

import (
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/api.md from the table")

const referencePath = "../../docs/api.md"

// The checked-in reference must be what the table generates.
func TestReference(t *testing.T) {
	want := Reference()
	if *update {
		if err := os.MkdirAll("../../docs", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(referencePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v (run: go test ./mgmt/api -run TestReference -update)", err)
	}
	if string(got) != want {
		t.Fatalf("docs/api.md is stale: run go test ./mgmt/api -run TestReference -update")
	}
}
