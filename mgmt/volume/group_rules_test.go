package volume

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// TestGroupRules drives the pure rules of consistency groups (Cinder's)
// from testdata/groups. Each command answers ok, or the refusal as
// CODE ["params"]: message.
//
//	group-status stored=<status> [busy=<status>]       checkGroupStatus
//	snapshot-status stored=<status> [busy=<status>]    checkGroupSnapshotStatus
//	update [name=N] [description=D] [long-name] [long-description]
//	       [name-len=N] [add=V1,V2] [remove=V3,V4]     checkUpdateRequest
//	membership group=G pools=P1,P2 id=V [kind=live|snapshot|cbt_metadata]
//	       pool=P [in=G2] [busy] add|remove            checkMembership
//	delete id=G status=S [members=N] [snapshots=N] [force]
//	                                                    checkGroupDelete
//	from-source [snapshot=S] [group=G]                 checkFromSource
//
// long-name and long-description make a 256-character value (one over
// MaxNameLength); name-len=N makes an N-character name.
func TestGroupRules(t *testing.T) {
	datadriven.RunTest(t, "testdata/groups", func(t *testing.T, d *datadriven.TestData) string {
		args := map[string]string{}
		for _, a := range d.CmdArgs {
			if _, dup := args[a.Key]; dup {
				d.Fatalf(t, "argument %q given twice", a.Key)
			}
			args[a.Key] = strings.Join(a.Vals, ",")
		}
		used := map[string]bool{}
		arg := func(key string) (string, bool) {
			used[key] = true
			v, ok := args[key]
			return v, ok
		}
		val := func(key string) string {
			v, _ := arg(key)
			return v
		}
		list := func(key string) []string {
			v, ok := arg(key)
			if !ok || v == "" {
				return nil
			}
			return strings.Split(v, ",")
		}
		count := func(key string) int {
			v, ok := arg(key)
			if !ok {
				return 0
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				d.Fatalf(t, "%s: %v", key, err)
			}
			return n
		}
		flag := func(key string) bool {
			_, ok := arg(key)
			return ok
		}
		ids := func(prefix string, n int) []string {
			out := []string{}
			for i := range n {
				out = append(out, fmt.Sprintf("%s%d", prefix, i+1))
			}
			return out
		}

		var err *fault.Error
		switch d.Cmd {
		case "group-status":
			err = checkGroupStatus(val("stored"), val("busy"))
		case "snapshot-status":
			err = checkGroupSnapshotStatus(val("stored"), val("busy"))
		case "update":
			var u GroupUpdate
			if v, ok := arg("name"); ok {
				u.Name = &v
			}
			if v, ok := arg("description"); ok {
				u.Description = &v
			}
			if flag("long-name") {
				s := strings.Repeat("n", MaxNameLength+1)
				u.Name = &s
			}
			if flag("long-description") {
				s := strings.Repeat("d", MaxNameLength+1)
				u.Description = &s
			}
			if _, ok := args["name-len"]; ok {
				s := strings.Repeat("n", count("name-len"))
				u.Name = &s
			}
			u.Add, u.Remove = list("add"), list("remove")
			err = checkUpdateRequest(u)
		case "membership":
			add, remove := flag("add"), flag("remove")
			if add == remove {
				d.Fatalf(t, "membership needs exactly one of add and remove")
			}
			vol := MemberState{ID: val("id"), Kind: blockstore.KindLive, Pool: val("pool"), Group: val("in"), Busy: flag("busy")}
			if k, ok := arg("kind"); ok {
				vol.Kind = blockstore.Kind(k)
			}
			err = checkMembership(val("group"), list("pools"), vol, add)
		case "delete":
			g := Group{ID: val("id"), Status: val("status"), Members: ids("V", count("members")),
				Snapshots: ids("C", count("snapshots"))}
			err = checkGroupDelete(g, flag("force"))
		case "from-source":
			err = checkFromSource(val("snapshot"), val("group"))
		default:
			d.Fatalf(t, "unknown command %q", d.Cmd)
		}
		for k := range args {
			if !used[k] {
				d.Fatalf(t, "%s: unknown argument %q", d.Cmd, k)
			}
		}
		if err == nil {
			return "ok\n"
		}
		// Every violation is invalid input: Cinder answers 400 for each.
		if err.Kind != fault.Invalid {
			d.Fatalf(t, "%s is a %v fault, want %v", err.Code, err.Kind, fault.Invalid)
		}
		return fmt.Sprintf("%s %q: %s\n", err.Code, err.Params, err.Message)
	})
}
