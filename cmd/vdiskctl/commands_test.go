package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

func testRoot() *cobra.Command {
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	return a.newRoot()
}

// Every call of the table has a command at its generated name, with a flag
// per non-path argument, and --help works for it under both spellings.
func TestEveryRPCHasACommand(t *testing.T) {
	root := testRoot()
	globals := map[string]bool{}
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) { globals[f.Name] = true })
	f := newFake(t)
	seen := map[*cobra.Command]bool{}
	for _, r := range commandedCalls() {
		sp := surfaceOf(r)
		path := commandPath(r)
		cmd, rest, err := root.Find(path)
		if err != nil || len(rest) != 0 || cmd.Name() != path[len(path)-1] {
			t.Fatalf("%s: no command at %q (found %q, rest %q, %v)", r.Name(), path, cmd.CommandPath(), rest, err)
		}
		if seen[cmd] {
			t.Fatalf("%s: command %q serves two calls", r.Name(), cmd.CommandPath())
		}
		seen[cmd] = true
		if r.Class == handWritten {
			continue
		}
		vals := map[string]string{}
		for _, arg := range r.Arguments() {
			vals[arg.Name] = "x"
			if _, global := sp.pathFlags[arg.Name]; global || r.Args.FieldByIndex(arg.Index).Tag.Get("cli") == "-" {
				continue
			}
			if arg.Source == api.FromPath {
				if !strings.Contains(cmd.Use, "<"+arg.Name+">") {
					t.Errorf("%s: use line %q lacks <%s>", r.Name(), cmd.Use, arg.Name)
				}
				continue
			}
			name := argFlag(sp, r, arg, root.PersistentFlags())
			if cmd.LocalFlags().Lookup(name) == nil {
				t.Errorf("%s: no flag --%s for argument %s", r.Name(), name, arg.Name)
			}
			if globals[name] {
				t.Errorf("%s: argument %s's flag --%s hides the global flag", r.Name(), arg.Name, name)
			}
		}

		for k, v := range sp.fixed {
			vals[k] = v
		}
		if urlPath := fillPath(r.Path, vals); strings.ContainsAny(urlPath, "{}") || strings.Contains(urlPath, "//") {
			t.Errorf("%s: path %s has a variable no argument fills", r.Name(), r.Path)
		}
		if sp.tasks && answersTask(r) && !strings.Contains(cmd.Long, "--wait") {
			t.Errorf("%s runs as a task but its help does not mention --wait", r.Name())
		}

		spellings := [][]string{path}
		if strings.Contains(r.Call, "_") {
			spellings = append(spellings, []string{path[0], r.Call})
		}
		for _, p := range spellings {
			res := f.do(t, append(p, "--help")...).wantCode(t, 0)
			if !strings.Contains(res.stdout, "Usage:") || !strings.Contains(res.stdout, r.Summary) {
				t.Errorf("%s --help: no usage or summary:\n%s", strings.Join(p, " "), res.stdout)
			}
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("--help sent %d requests", n)
	}

	// And nothing else: every command under a group is a call.
	calls := 0
	for _, g := range root.Commands() {
		for range g.Commands() {
			calls++
		}
	}
	want := 0
	for _, r := range commandedCalls() {
		if r.Class != handWritten {
			want++
		}
	}
	if calls != want {
		t.Fatalf("%d commands in groups, want %d (one per call)", calls, want)
	}
	t.Logf("%d calls, %d generated commands", len(commandedCalls()), calls)
}

func TestHelp(t *testing.T) {
	f := newFake(t)
	for _, args := range [][]string{{"--help"}, {"help"}, {"vdi", "--help"}, {"help", "vdi", "create"}, {"login", "--help"}} {
		res := f.do(t, args...).wantCode(t, 0)
		if !strings.Contains(res.stdout, "Usage:") {
			t.Errorf("%q: no usage:\n%s", args, res.stdout)
		}
	}
	res := f.do(t, "vdi", "create", "--help").wantCode(t, 0)
	for _, want := range []string{"--virtual-size size", "(required)", "--sr string", "--other-config key=value", "POST /api/vdis", "vm-admin"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("vdi create --help lacks %q:\n%s", want, res.stdout)
		}
	}
}

func TestArgumentMapping(t *testing.T) {
	f := newFake(t)
	rec := `{"uuid":"u1","name_label":"a"}`
	cases := []struct {
		name        string
		args        []string
		method, uri string
		body        string // "" for none
	}{
		{"create", []string{"vdi", "create", "--name-label", "a", "--virtual-size", "1G", "--other-config", "k=v", "--tags", "x"},
			"POST", "/api/vdis", `{"name_label":"a","virtual_size":1073741824,"other_config":{"k":"v"},"tags":["x"]}`},
		{"create SR", []string{"vdi", "create", "--virtual-size=1.5GiB", "--sr", "p", "--sharable", "--tags", "a,b", "--tags", "c", "--sm-config", "x=1=2"},
			"POST", "/api/vdis", `{"virtual_size":1610612736,"SR":"p","sharable":true,"tags":["a,b","c"],"sm_config":{"x":"1=2"}}`},
		{"copy sr", []string{"vdi", "copy", "U", "--sr", "p2", "--base-vdi", "B"},
			"POST", "/api/vdis/U/copy", `{"sr":"p2","base_vdi":"B"}`},
		{"list_changed_blocks", []string{"vdi", "list-changed-blocks", "T", "--vdi-from", "F"},
			"GET", "/api/vdis/T/list_changed_blocks?vdi_from=F", ""},
		{"set_read_only false", []string{"vdi", "set-read-only", "U", "--value=false"},
			"POST", "/api/vdis/U/set_read_only", `{"value":false}`},
		{"set_read_only true", []string{"vdi", "set_read_only", "U", "--value"},
			"POST", "/api/vdis/U/set_read_only", `{"value":true}`},
		{"enable_cbt", []string{"vdi", "enable-cbt", "U"}, "POST", "/api/vdis/U/enable_cbt", `{}`},
		{"get_virtual_size", []string{"vdi", "get-virtual-size", "U"}, "GET", "/api/vdis/U/get_virtual_size", ""},
		{"list", []string{"vdi", "list", "--sr", "p", "--tag", "t", "--page", "2", "--page-size", "5", "--sort", "-virtual_size"},
			"GET", "/api/vdis?SR=p&page=2&page_size=5&sort=-virtual_size&tag=t", ""},
		{"resize", []string{"vdi", "resize", "U", "--size", "2048M"}, "POST", "/api/vdis/U/resize", `{"size":2147483648}`},
		{"set_tags empty", []string{"vdi", "set-tags", "U", "--value="}, "POST", "/api/vdis/U/set_tags", `{"value":[]}`},
		{"set_other_config", []string{"vdi", "set-other-config", "U", "--value", "a=1", "--value", "b="},
			"POST", "/api/vdis/U/set_other_config", `{"value":{"a":"1","b":""}}`},
		{"add_to_sm_config", []string{"vdi", "add-to-sm-config", "U", "--key", "k", "--value", "v"},
			"POST", "/api/vdis/U/add_to_sm_config", `{"key":"k","value":"v"}`},
		{"snapshot", []string{"vdi", "snapshot", "U", "--driver-params", "a=b"},
			"POST", "/api/vdis/U/snapshot", `{"driver_params":{"a":"b"}}`},
		{"introduce *bool", []string{"vdi", "introduce", "--uuid", "U", "--managed"},
			"POST", "/api/vdis/introduce", `{"uuid":"U","managed":true}`},
		{"pool_migrate", []string{"vdi", "pool-migrate", "U", "--sr", "p"}, "POST", "/api/vdis/U/pool_migrate", `{"sr":"p"}`},
		{"vpool create", []string{"vpool", "create", "--name", "p1", "--size", "1T"},
			"POST", "/api/vpools", `{"name":"p1","size":1099511627776}`},
		{"vpool get", []string{"vpool", "get", "local"}, "GET", "/api/vpools/local", ""},
		{"update_storagedrivers", []string{"vpool", "update-storagedrivers", "G", "--storagerouter-guids", "s1"},
			"POST", "/api/vpools/G/update_storagedrivers", `{"storagerouter_guids":["s1"]}`},
		{"task list", []string{"task", "list", "--status", "pending"}, "GET", "/api/tasks?status=pending", ""},
		{"task cancel", []string{"task", "cancel", "T"}, "POST", "/api/tasks/T/cancel", `{}`},
		{"user create", []string{"user", "create", "--username", "bob", "--password", "12345678", "--role", "vm-admin"},
			"POST", "/api/users", `{"username":"bob","password":"12345678","role":"vm-admin"}`},
		{"user update *string", []string{"user", "update", "bob", "--role", "read-only"},
			"PATCH", "/api/users/bob", `{"role":"read-only"}`},
		{"user get escaped", []string{"user", "get", "a b/c"}, "GET", "/api/users/a%20b%2Fc", ""},
		{"user delete", []string{"user", "delete", "bob"}, "DELETE", "/api/users/bob", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.reset()
			path, _, _ := strings.Cut(c.uri, "?")
			if strings.Contains(path, "%") {
				path = strings.NewReplacer("%20", " ", "%2F", "/").Replace(path)
			}
			f.on(c.method, path, http.StatusOK, rec)
			f.do(t, c.args...).wantCode(t, 0)
			rs := f.requests()
			if len(rs) != 1 {
				t.Fatalf("%d requests, want 1", len(rs))
			}
			r := rs[0]
			if r.Method != c.method || r.URI != c.uri {
				t.Fatalf("sent %s %s, want %s %s", r.Method, r.URI, c.method, c.uri)
			}
			if c.body == "" {
				if r.Body != "" {
					t.Fatalf("sent body %q, want none", r.Body)
				}
				return
			}
			if r.ContentType != "application/json" {
				t.Errorf("Content-Type %q", r.ContentType)
			}
			jsonEqual(t, r.Body, c.body)
		})
	}
}

// Bad usage exits 2 and sends nothing.
func TestUsageErrors(t *testing.T) {
	f := newFake(t)
	cases := []struct {
		args []string
		want string // in stderr
	}{
		{[]string{}, "Usage:"},
		{[]string{"vdi"}, "Usage:"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"vdi", "snapshott", "U"}, "did you mean snapshot"},
		{[]string{"vdi", "create", "--name-label", "a"}, "missing required flag --virtual-size"},
		{[]string{"vdi", "list-changed-blocks", "T"}, "missing required flag --vdi-from"},
		{[]string{"vdi", "add-to-other-config", "U"}, "missing required flag --key, --value"},
		{[]string{"vdi", "set-read-only", "U"}, "--value"},
		{[]string{"user", "create", "--username", "bob"}, "--password, --role"},
		{[]string{"vdi", "get"}, "needs <uuid>"},
		{[]string{"vdi", "get", "a", "b"}, "takes <uuid> only"},
		{[]string{"vdi", "list", "x"}, "takes no arguments"},
		{[]string{"vdi", "get", ""}, "must not be empty"},
		{[]string{"vdi", "create", "--virtual-size", "10X"}, "unknown unit"},
		{[]string{"vdi", "create", "--virtual-size", "0.3"}, "not a size"},
		{[]string{"vdi", "create", "--virtual-size", "1G", "--other-config", "novalue"}, "want key=value"},
		{[]string{"vdi", "create", "--virtual-size", "1G", "--bogus"}, "unknown flag: --bogus"},
		// Validate, as the server would.
		{[]string{"vdi", "create", "--virtual-size", "0"}, "INVALID_VALUE [virtual_size, 0]"},
		{[]string{"vdi", "create", "--virtual-size", "1G", "--type", "nope"}, "INVALID_VALUE [type, nope]"},
		{[]string{"vdi", "set-on-boot", "U", "--value", "later"}, "persist, reset"},
		{[]string{"user", "create", "--username", "bob", "--password", "short", "--role", "vm-admin"}, "password"},
		{[]string{"user", "update", "bob"}, "give password, role or both"},
		{[]string{"vpool", "create", "--name", "bad name"}, "INVALID_VALUE [name, bad name]"},
		{[]string{"vdi", "list", "--page-size", "5000"}, "page_size"},
		{[]string{"task", "list", "--status", "done"}, "status"},
		{[]string{"login", "extra"}, "takes no arguments"},
		{[]string{"vdi", "list", "--url", "ftp://x"}, "bad URL"},
	}
	for _, c := range cases {
		res := f.do(t, c.args...)
		if res.code != exitUsage || !strings.Contains(res.stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", c.args, res.code, res.stderr, c.want)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("usage errors sent %d requests", n)
	}
}

// commandedCalls are the calls of every surface that get a command.
func commandedCalls() []*api.RPC {
	var out []*api.RPC
	for _, sp := range surfaces {
		for _, r := range sp.table.All() {
			if sp.commanded(r) {
				out = append(out, r)
			}
		}
	}
	return out
}
