package vdiskdtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The binaries are built once per test binary, into one temporary
// directory that Main removes.
var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]error{} // by command name
)

// Main runs the tests of a package that uses Binary and removes the
// binaries afterwards: func TestMain(m *testing.M) { vdiskdtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	buildMu.Lock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	buildMu.Unlock()
	os.Exit(code)
}

// Binary builds the module's command ./cmd/<name> (vdiskd, vdiskctl) once
// per test binary, with -race when the test binary has it, and returns
// its path. The go command inherits the environment, GOFLAGS included.
func Binary(t testing.TB, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	err, ok := built[name]
	if !ok {
		err = build(name)
		built[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(buildDir, name)
}

func build(name string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	if buildDir == "" {
		if buildDir, err = os.MkdirTemp("", "vdiskdtest-bin-"); err != nil {
			return err
		}
	}
	args := []string{"build", "-o", filepath.Join(buildDir, name)}
	if Race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/"+name)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/%s (GOFLAGS=%q): %v\n%s", name, os.Getenv("GOFLAGS"), err, out)
	}
	return nil
}

// ModuleRoot is the directory of go.mod above the working directory (a
// test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vdiskdtest: no go.mod above the test's directory")
		}
		dir = parent
	}
}
