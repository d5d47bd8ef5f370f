package mgmt

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/nbd"
)

func exportName(id, token string) string { return "/" + id + "?session_id=" + token }

// Export names authorise like XenServer's: a valid token of a vm-admin or
// higher, in the /<uuid>?session_id=<token> form. Every refusal looks the
// same, so a client learns nothing about VDIs it may not use.
func TestNBDExportNames(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "disk"})
	ex := e.s.NBDExports(NBDAuthToken)
	operator := e.userWithRole(api.VMOperator)
	vmAdmin := e.userWithRole(api.VMAdmin)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{exportName(v.UUID, e.admin), true},
		{exportName(v.UUID, vmAdmin), true},
		{exportName(v.UUID, operator), false}, // below get_nbd_info's role
		{exportName(v.UUID, "vdt_nope"), false},
		{exportName("0b5f6d3a-3c39-4bde-8e8a-27d1f0d4e0f1", e.admin), false},
		{v.UUID, false},
		{"/" + v.UUID, false},
		{"/" + v.UUID + "?session_id=" + e.admin + "&x=1", false},
		{"/" + v.UUID + "?session_id=" + e.admin + "&session_id=" + e.admin, false},
		{"/not-a-uuid?session_id=" + e.admin, false},
		{"", false},
	} {
		info, err := ex.Describe(&nbd.Conn{}, tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("Describe(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if err != nil {
			var oe *nbd.OptionError
			if !errors.As(err, &oe) {
				t.Errorf("Describe(%q): %v is not an nbd.OptionError", tc.name, err)
			}
			continue
		}
		if info.Size != uint64(v.VirtualSize) || info.ReadOnly || info.Description != "disk" {
			t.Errorf("Describe(%q) = %+v", tc.name, info)
		}
	}
	// The token expires: the name stops working.
	e.advance(25 * 60 * 60 * 1e9)
	if _, err := ex.Describe(&nbd.Conn{}, exportName(v.UUID, e.admin)); err == nil {
		t.Error("an expired token still opens the export")
	}

	// With --nbd-auth=none the bare uuid works, and so does any session.
	none := e.s.NBDExports(NBDAuthNone)
	for _, name := range []string{v.UUID, "/" + v.UUID, exportName(v.UUID, "whatever")} {
		if _, err := none.Describe(&nbd.Conn{}, name); err != nil {
			t.Errorf("auth none: Describe(%q) = %v", name, err)
		}
	}
}

// A connection is a VBD: it shows on the record, blocks what XenAPI blocks
// while attached, and goes away on Close.
func TestNBDOpenIsAVBD(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "disk"})
	e.post(v.UUID, "enable_cbt", nil)
	snap := e.post(v.UUID, "snapshot", nil)
	ex := e.s.NBDExports(NBDAuthToken)

	exp, info, err := ex.Open(&nbd.Conn{}, exportName(v.UUID, e.admin))
	if err != nil {
		t.Fatal(err)
	}
	if info.ReadOnly {
		t.Fatal("a live VDI exported read-only")
	}
	rec := e.vdi(v.UUID)
	if len(rec.VBDs) != 1 {
		t.Fatalf("VBDs while attached = %v", rec.VBDs)
	}
	e.fails(http.StatusConflict, api.CodeVDIInUse, "GET", "/api/vdis/"+v.UUID+"/list_changed_blocks?vdi_from="+snap.UUID, e.admin, nil)
	e.fails(http.StatusConflict, api.CodeVDIInUse, "DELETE", "/api/vdis/"+v.UUID, e.admin, nil)

	// A snapshot attaches read-only alongside and does not block CBT.
	sexp, sinfo, err := ex.Open(&nbd.Conn{}, exportName(snap.UUID, e.admin))
	if err != nil {
		t.Fatal(err)
	}
	if !sinfo.ReadOnly {
		t.Fatal("a snapshot exported writable")
	}
	if err := sexp.WriteAt(make([]byte, 4096), 0, false); !errors.Is(err, nbd.EPERM) {
		t.Fatalf("write to a snapshot export: %v, want EPERM", err)
	}
	if err := exp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sexp.Close(); err != nil {
		t.Fatal(err)
	}
	if rec := e.vdi(v.UUID); len(rec.VBDs) != 0 {
		t.Fatalf("VBDs after close = %v", rec.VBDs)
	}
	e.must(http.StatusOK, "GET", "/api/vdis/"+v.UUID+"/list_changed_blocks?vdi_from="+snap.UUID, e.admin, nil, nil)
}

// qemu:dirty-bitmap:<base> is list_changed_blocks(base, this VDI), block
// for block, and follows writes on a live export at once.
func TestNBDDirtyBitmapIsListChangedBlocks(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "disk", "virtual_size": 8 << 20})
	e.post(v.UUID, "enable_cbt", nil)
	s0 := e.post(v.UUID, "snapshot", nil)
	e.write(v.UUID, 1<<20+100, pattern(1, 5000))  // 64 KiB blocks 16 (and not 17: ends at 1053676)
	e.write(v.UUID, 5<<20-4096, pattern(2, 8192)) // blocks 79 and 80
	s1 := e.post(v.UUID, "snapshot", nil)
	ex := e.s.NBDExports(NBDAuthToken)

	info, err := ex.Describe(&nbd.Conn{}, exportName(s1.UUID, e.admin))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"base:allocation", "qemu:dirty-bitmap:" + s0.UUID}
	if strings.Join(info.MetaContexts, " ") != strings.Join(want, " ") {
		t.Fatalf("contexts of s1 = %v, want %v", info.MetaContexts, want)
	}
	dirty := func(exp nbd.Export, base string, off, n uint64) []uint64 {
		t.Helper()
		var blocks []uint64
		at := off
		err := exp.BlockStatus("qemu:dirty-bitmap:"+base, off, n, func(length uint64, flags uint32) error {
			if flags&^1 != 0 {
				t.Fatalf("flags %#x: only bit 0 belongs to the bitmap context", flags)
			}
			if flags == 1 {
				for b := at >> cbt.BlockShift; b < (at+length+cbt.BlockSize-1)>>cbt.BlockShift; b++ {
					blocks = append(blocks, b)
				}
			}
			at += length
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if at != off+n {
			t.Fatalf("extents cover [%d,%d), want [%d,%d)", off, at, off, off+n)
		}
		return blocks
	}
	sexp, _, err := ex.Open(&nbd.Conn{}, exportName(s1.UUID, e.admin))
	if err != nil {
		t.Fatal(err)
	}
	defer sexp.Close()
	var lcb api.ChangedBlocks
	e.must(http.StatusOK, "GET", "/api/vdis/"+s1.UUID+"/list_changed_blocks?vdi_from="+s0.UUID, e.admin, nil, &lcb)
	bm, err := cbt.Decode(lcb.Bitmap, uint64(lcb.VirtualSize))
	if err != nil {
		t.Fatal(err)
	}
	got := dirty(sexp, s0.UUID, 0, 8<<20)
	var want64 []uint64
	for _, b := range bm.ToArray() {
		want64 = append(want64, uint64(b))
	}
	if !slices.Equal(got, want64) {
		t.Fatalf("dirty blocks %v, list_changed_blocks %v", got, want64)
	}
	if len(got) != 3 || got[0] != 16 || got[1] != 79 || got[2] != 80 {
		t.Fatalf("dirty blocks %v, want [16 79 80]", got)
	}
	// A sub-range starting mid-block is clamped to the request.
	if got := dirty(sexp, s0.UUID, 1<<20+512, 4096); len(got) != 1 {
		t.Fatalf("dirty in a 4 KiB window of block 16: %v", got)
	}

	// On the live VDI, a write through the export shows at once.
	lexp, _, err := ex.Open(&nbd.Conn{}, exportName(v.UUID, e.admin))
	if err != nil {
		t.Fatal(err)
	}
	defer lexp.Close()
	if err := lexp.WriteAt(pattern(3, 4096), 7<<20, false); err != nil {
		t.Fatal(err)
	}
	if got := dirty(lexp, s1.UUID, 0, 8<<20); len(got) != 1 || got[0] != 112 {
		t.Fatalf("dirty since s1 on the live VDI: %v, want [112]", got)
	}
}

// LIST answers for the session an earlier option proved on the same
// connection; without one it is refused, not empty.
func TestNBDList(t *testing.T) {
	e := newEnv(t)
	a := e.createVDI(map[string]any{"name_label": "a"})
	b := e.createVDI(map[string]any{"name_label": "b"})
	e.post(b.UUID, "enable_cbt", nil)
	s := e.post(b.UUID, "snapshot", nil)
	e.must(http.StatusOK, "POST", "/api/vdis/"+s.UUID+"/data_destroy", e.admin, nil, nil) // cbt_metadata: not exportable
	ex := e.s.NBDExports(NBDAuthToken)
	c := &nbd.Conn{}
	if _, err := ex.List(c); err == nil {
		t.Fatal("LIST without a session answered")
	}
	if _, err := ex.Describe(c, exportName(s.UUID, e.admin)); err == nil || !strings.Contains(err.Error(), "cbt_metadata") {
		t.Fatalf("describing a cbt_metadata VDI: %v", err)
	}
	list, err := ex.List(c)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range list {
		got[l.Name] = l.Description
	}
	want := map[string]string{exportName(a.UUID, e.admin): "a", exportName(b.UUID, e.admin): "b"}
	if len(got) != len(want) || got[exportName(a.UUID, e.admin)] != "a" || got[exportName(b.UUID, e.admin)] != "b" {
		t.Fatalf("LIST = %v, want %v", got, want)
	}
	// Revoking the token ends what the session may list.
	e.must(http.StatusNoContent, "DELETE", "/api/token", e.admin, nil, nil)
	if _, err := ex.List(c); err == nil {
		t.Fatal("LIST answered for a revoked token")
	}
}

// get_nbd_info builds the export name from the caller's token, or leaves
// it out with --nbd-auth=none.
func TestNBDInfoExportName(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "a"})
	var got []api.NBDInfo
	e.must(http.StatusOK, "GET", "/api/vdis/"+v.UUID+"/nbd_info", e.admin, nil, &got)
	if len(got) != 0 {
		t.Fatalf("without an NBD server: %v, want []", got)
	}
	info := func(name string) []api.NBDInfo { return []api.NBDInfo{{ExportName: name}} }
	e = newEnvWith(t, func(o *Options) { o.NBDInfo = info })
	v = e.createVDI(map[string]any{"name_label": "a"})
	e.must(http.StatusOK, "GET", "/api/vdis/"+v.UUID+"/nbd_info", e.admin, nil, &got)
	if len(got) != 1 || got[0].ExportName != exportName(v.UUID, e.admin) {
		t.Fatalf("nbd_info = %+v", got)
	}
	e = newEnvWith(t, func(o *Options) { o.NBDInfo, o.NBDAuth = info, NBDAuthNone })
	v = e.createVDI(map[string]any{"name_label": "a"})
	e.must(http.StatusOK, "GET", "/api/vdis/"+v.UUID+"/nbd_info", e.admin, nil, &got)
	if len(got) != 1 || got[0].ExportName != "/"+v.UUID {
		t.Fatalf("nbd_info with auth none = %+v", got)
	}
}
