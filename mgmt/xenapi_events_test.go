package mgmt

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// A model test of XenAPI's events against the volume service's change
// feed: random VDI, SR and attachment operations (seeded), and after each
// the records rebuilt from event.from's stream equal get_all_records of
// every class. The full reread that would hide a change the feed missed
// is an hour away, so only the feed can keep the stream right.
func TestXenAPIEventsFollowTheFeed(t *testing.T) {
	for _, seed := range []uint64{20, 7} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { eventsFollowTheFeed(t, seed) })
	}
}

func eventsFollowTheFeed(t *testing.T, seed uint64) {
	e := withNBDTweak(t, "z", func(o *Options) { o.EventRescan = time.Hour })
	res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword)
	sess := res.(string)
	must := func(method string, params ...any) any { t.Helper(); return e.xenOK(sess, method, params...) }
	classes := []string{"VDI", "SR", "VBD", "pool", "host", "VM"}
	mirror := map[string]map[string]any{} // class/ref -> record
	token := ""
	effective := map[string]int{} // operations that made events
	follow := func(step int, what string) {
		t.Helper()
		var evs []map[string]any
		evs, token = e.eventsFrom(sess, []any{"*"}, token, 0.0)
		if len(evs) > 0 {
			effective[what]++
		}
		for _, ev := range evs {
			key := ev["class"].(string) + "/" + ev["ref"].(string)
			if ev["operation"] == "del" {
				delete(mirror, key)
			} else {
				mirror[key] = ev["snapshot"].(map[string]any)
			}
		}
		for _, class := range classes {
			truth := must(class + ".get_all_records").(map[string]any)
			for ref, rec := range truth {
				if got := mirror[class+"/"+ref]; !reflect.DeepEqual(got, rec) {
					t.Fatalf("step %d (%s): %s %s from events:\n%v\nget_record:\n%v", step, what, class, ref, got, rec)
				}
			}
			for key := range mirror {
				if c, ref, _ := strings.Cut(key, "/"); c == class && truth[ref] == nil {
					t.Fatalf("step %d (%s): events still have %s %s", step, what, class, ref)
				}
			}
		}
	}
	follow(0, "start")

	rng := rand.New(rand.NewPCG(seed, 12))
	var vdis, forgotten []string // refs
	srs := []string{must("SR.get_all").([]any)[0].(string)}
	conns := map[string]*nbdtest.Client{} // VDI ref -> a client attached to it
	pick := func(l []string) string { return l[rng.IntN(len(l))] }
	try := func(method string, params ...any) any {
		r, _, _ := e.jsonrpc(method, append([]any{sess}, params...)...)
		return r
	}
	addRef := func(r any) {
		if s, ok := r.(string); ok && strings.HasPrefix(s, "OpaqueRef:") {
			vdis = append(vdis, s)
		}
	}
	for step := 1; step <= 400; step++ {
		op := rng.IntN(14)
		if len(vdis) == 0 {
			op = 0
		}
		what := ""
		switch op {
		case 0:
			what = "create"
			addRef(try("VDI.create", map[string]any{"name_label": fmt.Sprint("v", step), "SR": pick(srs),
				"virtual_size": fmt.Sprint((1 + rng.IntN(4)) << 20), "type": "user", "sharable": false, "read_only": false,
				"other_config": map[string]any{}}))
		case 1:
			what = "snapshot"
			addRef(try("VDI.snapshot", pick(vdis), map[string]any{}))
		case 2:
			what = "clone"
			addRef(try("VDI.clone", pick(vdis), map[string]any{}))
		case 3:
			what = "destroy"
			v := pick(vdis)
			if c := conns[v]; c != nil {
				continue
			}
			if r, code, _ := e.jsonrpc("VDI.destroy", sess, v); code == "" && r == "" {
				vdis = slices.DeleteFunc(vdis, func(x string) bool { return x == v })
			}
		case 4:
			what = "set_name_label"
			try("VDI.set_name_label", pick(vdis), fmt.Sprint("n", step))
		case 5:
			what = "add_tags"
			try("VDI.add_tags", pick(vdis), fmt.Sprint("t", rng.IntN(3)))
		case 6:
			what = "enable_cbt"
			try("VDI.enable_cbt", pick(vdis))
		case 7:
			what = "data_destroy"
			v := pick(vdis)
			try("VDI.enable_cbt", v)
			if snap, ok := try("VDI.snapshot", v, map[string]any{}).(string); ok {
				addRef(snap)
				try("VDI.data_destroy", snap)
			}
		case 8:
			what = "forget"
			v := pick(vdis)
			if conns[v] != nil {
				continue
			}
			if _, code, _ := e.jsonrpc("VDI.forget", sess, v); code == "" {
				vdis = slices.DeleteFunc(vdis, func(x string) bool { return x == v })
				forgotten = append(forgotten, v)
			}
		case 9:
			what = "introduce"
			if len(forgotten) == 0 {
				continue
			}
			v := forgotten[0]
			if r := try("VDI.introduce", strings.TrimPrefix(v, "OpaqueRef:"), "back", "", "OpaqueRef:NULL", "user",
				false, false, map[string]any{}, "", map[string]any{}, map[string]any{}); r == v {
				forgotten = forgotten[1:]
				vdis = append(vdis, v)
			}
		case 10:
			v := pick(vdis)
			if c := conns[v]; c != nil {
				what = "detach"
				c.Disconnect()
				waitDetached(t, e, strings.TrimPrefix(v, "OpaqueRef:"))
				delete(conns, v)
				break
			}
			what = "attach"
			infos, _ := try("VDI.get_nbd_info", v).([]any)
			if len(infos) == 0 {
				continue // cbt_metadata
			}
			export := infos[0].(map[string]any)["exportname"].(string)
			conns[v] = nbdtest.Connect(t, "tcp", e.nbdAddr, nbdtest.Negotiation{Export: export})
		case 11:
			what = "new SR, pool_migrate"
			if len(srs) < 3 {
				var p struct{ GUID string }
				e.must(201, "POST", "/api/vpools", e.admin, map[string]any{"name": fmt.Sprint("p", step)}, &p)
				srs = append(srs, "OpaqueRef:"+p.GUID)
			}
			try("VDI.pool_migrate", pick(vdis), pick(srs), map[string]any{})
		case 12:
			what = "resize"
			try("VDI.resize", pick(vdis), fmt.Sprint(8<<20))
		case 13:
			what = "copy"
			addRef(try("VDI.copy", pick(vdis), pick(srs)))
		}
		follow(step, what)
	}
	for _, c := range conns {
		c.Disconnect()
	}
	t.Logf("operations that made events: %v", effective)
	for _, what := range []string{"create", "snapshot", "clone", "destroy", "set_name_label", "add_tags", "enable_cbt",
		"data_destroy", "forget", "introduce", "attach", "detach", "new SR, pool_migrate", "resize", "copy"} {
		if effective[what] == 0 {
			t.Errorf("no %s made an event: the test does not exercise it", what)
		}
	}
}

// What one event costs Xen Orchestra's event loop as the pool grows: a
// VDI renamed, then event.from with the previous token (over real HTTP),
// at 100, 1,000 and 10,000 VDIs; feed: the change feed names the VDI,
// rescan: every look rereads every record (EventRescan 1 ns), as before
// the feed.
//
//	go test -run '^$' -bench BenchmarkXenAPIEvents -benchtime 200x ./mgmt
func BenchmarkXenAPIEvents(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		for _, mode := range []string{"feed", "rescan"} {
			b.Run(fmt.Sprintf("vdis=%d/%s", n, mode), func(b *testing.B) {
				rescan := time.Hour
				if mode == "rescan" {
					rescan = time.Nanosecond
				}
				e := newEnvWith(b, func(o *Options) { o.EventRescan = rescan })
				ids := seedVDIs(e, n)
				res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword)
				sess := res.(string)
				token := e.xenOK(sess, "event.from", []any{"VDI"}, "", 0.0).(map[string]any)["token"].(string)
				i := 0
				for b.Loop() {
					i++
					e.xenOK(sess, "VDI.set_name_label", "OpaqueRef:"+ids[i%len(ids)], fmt.Sprint("n", i))
					r := e.xenOK(sess, "event.from", []any{"VDI"}, token, 0.0).(map[string]any)
					if len(r["events"].([]any)) == 0 {
						b.Fatalf("no event for the rename %d", i)
					}
					token = r["token"].(string)
				}
			})
		}
	}
}
