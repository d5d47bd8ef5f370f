package systest

import (
	"syscall"
	"testing"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// The real binary exits 0 on SIGTERM, as make run's users stop it (with
// no VDISKD_ADMIN_PASSWORD, as make run starts it).
func TestBinaryExitsCleanlyOnSIGTERM(t *testing.T) {
	d := vdiskdtest.Start(t, vdiskdtest.Options{RandomAdminPassword: true})
	d.Signal(t, syscall.SIGTERM)
	if st := d.WaitExit(t, vdiskdtest.StopTimeout); !st.Success() {
		t.Fatalf("exit after SIGTERM: %v\n%s", st, d.Log())
	}
}
