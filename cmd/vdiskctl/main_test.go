package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHelpAndRefusal(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "Usage") {
		t.Fatalf("--help: exit %d, %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"vdi", "list"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "not available") {
		t.Fatalf("unsupported command: exit %d, %q", code, errOut.String())
	}
}
