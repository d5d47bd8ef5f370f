package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// handWritten are the classes whose calls have hand-written commands
// (login, logout).
const handWritten = "session"

// commandName is a call's command: '-' for '_'.
func commandName(call string) string { return strings.ReplaceAll(call, "_", "-") }

// flagName is an argument's flag: lower case, '-' for '_' ("SR" is --sr).
// (A trailing underscore, vStats' memo_, is dropped.)
func flagName(arg string) string {
	return strings.ReplaceAll(strings.TrimRight(strings.ToLower(arg), "_"), "_", "-")
}

// argFlag is an argument's flag: its flagName, or, where that is one of
// the root's global flags (zone create's url), prefixed with the command
// group's name (--zone-url).
func argFlag(sp *surfaceSpec, r *api.RPC, arg api.Arg, globals *pflag.FlagSet) string {
	name := flagName(arg.Name)
	if globals.Lookup(name) != nil {
		return sp.groupName(r.Class) + "-" + name
	}
	return name
}

// commandPath is where a call's command is, below the root.
func commandPath(r *api.RPC) []string {
	if r.Class == handWritten {
		return []string{commandName(r.Call)}
	}
	return []string{surfaceOf(r).groupName(r.Class), commandName(r.Call)}
}

// addRPCCommands adds a group per class and a command per call of every
// surface's table.
func (a *app) addRPCCommands(root *cobra.Command) {
	for _, sp := range surfaces {
		byClass := map[string]*cobra.Command{}
		for _, r := range sp.table.All() {
			if r.Class == handWritten || !sp.commanded(r) {
				continue
			}
			g := byClass[r.Class]
			if g == nil {
				short := sp.groups[r.Class].short
				if short == "" {
					short = "The " + r.Class + " calls"
				}
				g = &cobra.Command{Use: sp.groupName(r.Class), Short: short, Args: a.groupArgs, RunE: a.groupRun}
				byClass[r.Class] = g
				root.AddCommand(g)
			}
			g.AddCommand(a.rpcCommand(sp, r, root.PersistentFlags()))
		}
	}
}

// rpcCmd is the generated command of one call.
type rpcCmd struct {
	app  *app
	sp   *surfaceSpec
	rpc  *api.RPC
	args reflect.Value // *the argument struct, filled by the flags
	path []api.Arg     // positional, in order
	opts []flagArg     // the flags
	cmd  *cobra.Command
}

type flagArg struct {
	api.Arg
	flag string
}

func (a *app) rpcCommand(sp *surfaceSpec, r *api.RPC, globals *pflag.FlagSet) *cobra.Command {
	rc := &rpcCmd{app: a, sp: sp, rpc: r, args: reflect.New(r.Args)}
	use := commandName(r.Call)
	for _, arg := range r.Arguments() {
		if _, global := sp.pathFlags[arg.Name]; global {
			continue
		}
		if r.Args.FieldByIndex(arg.Index).Tag.Get("cli") == "-" {
			continue // what the client sends that the server ignores
		}
		if arg.Source == api.FromPath {
			rc.path = append(rc.path, arg)
			use += " <" + arg.Name + ">"
			continue
		}
		rc.opts = append(rc.opts, flagArg{arg, argFlag(sp, r, arg, globals)})
	}
	c := &cobra.Command{
		Use:   use,
		Short: r.Summary,
		Long:  longHelp(sp, r, rc.path),
		Args:  rc.checkArgs,
		RunE:  rc.run,
	}
	if commandName(r.Call) != r.Call {
		c.Aliases = []string{r.Call}
	}
	for _, o := range rc.opts {
		field := rc.args.Elem().FieldByIndex(o.Index)
		if err := bindFlag(c.Flags(), o.flag, field, flagUsage(o.flag, o.Doc, o.Type, o.Required)); err != nil {
			panic(fmt.Sprintf("vdiskctl: %s: %v", r.Name(), err)) // the table holds a type the CLI lacks: tests catch it
		}
	}
	rc.cmd = c
	return c
}

func longHelp(sp *surfaceSpec, r *api.RPC, path []api.Arg) string {
	var b strings.Builder
	b.WriteString(r.Summary)
	b.WriteString("\n")
	if len(path) > 0 {
		b.WriteString("\nArguments:\n")
		for _, p := range path {
			fmt.Fprintf(&b, "  <%s>  %s\n", p.Name, p.Doc)
		}
	}
	if r.Returns != "" {
		fmt.Fprintf(&b, "\nReturns %s.", strings.TrimSuffix(r.Returns, "."))
		if sp.tasks && answersTask(r) {
			b.WriteString(" vdiskctl prints the task's UUID; --wait waits for its result.")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nAPI call %s: %s %s, minimum role %s.", r.Name(), r.Method(), r.Path, r.Role)
	if len(r.XenAPI) > 0 {
		fmt.Fprintf(&b, " XenAPI: %s.%s.", r.Class, strings.Join(r.XenAPI, ", "+r.Class+"."))
	}
	return b.String()
}

// answersTask says a call runs as a task (a 202 answer). Some calls
// declare only their Returns so; the answer's status decides at run time.
func answersTask(r *api.RPC) bool {
	return r.Status == http.StatusAccepted || strings.HasPrefix(r.Returns, "a task")
}

// checkArgs wants exactly the path arguments.
func (rc *rpcCmd) checkArgs(c *cobra.Command, args []string) error {
	if len(args) == len(rc.path) {
		return nil
	}
	var want []string
	for _, p := range rc.path {
		want = append(want, "<"+p.Name+">")
	}
	var msg string
	switch {
	case len(rc.path) == 0:
		msg = fmt.Sprintf("%s takes no arguments, got %q", c.CommandPath(), args)
	case len(args) < len(rc.path):
		msg = fmt.Sprintf("%s needs %s", c.CommandPath(), strings.Join(want, " "))
	default:
		msg = fmt.Sprintf("%s takes %s only, got %d arguments %q", c.CommandPath(), strings.Join(want, " "), len(args), args)
	}
	return &exitError{code: exitUsage, msg: msg, hint: fmt.Sprintf("Run '%s --help' for usage.", c.CommandPath())}
}

func (rc *rpcCmd) usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: rc.cmd.CommandPath() + ": " + fmt.Sprintf(format, args...),
		hint: fmt.Sprintf("Run '%s --help' for usage.", rc.cmd.CommandPath())}
}

func (rc *rpcCmd) run(c *cobra.Command, args []string) error {
	r := rc.rpc
	argv := rc.args.Elem()

	// Path arguments, into the struct and the URL: the positional ones,
	// those a global flag gives (Cinder's project) and fixed ones.
	vals := map[string]string{}
	for name, v := range rc.sp.fixed {
		vals[name] = v
	}
	for name, flag := range rc.sp.pathFlags {
		if vals[name] = flag(rc.app); vals[name] == "" {
			return rc.usageErr("%s: no value; see --help", name)
		}
	}
	for i, p := range rc.path {
		if args[i] == "" {
			return rc.usageErr("<%s> must not be empty", p.Name)
		}
		vals[p.Name] = args[i]
	}
	for _, arg := range r.Arguments() {
		if arg.Source == api.FromPath {
			argv.FieldByIndex(arg.Index).SetString(vals[arg.Name])
		}
	}
	path := fillPath(r.Path, vals)

	// Required flags: given at all (a zero value counts).
	var missing []string
	for _, o := range rc.opts {
		if o.Required && !c.Flags().Changed(o.flag) {
			missing = append(missing, "--"+o.flag)
		}
	}
	if len(missing) > 0 {
		return rc.usageErr("missing required flag %s", strings.Join(missing, ", "))
	}

	// The rules the server checks too.
	if v, ok := rc.args.Interface().(api.Validator); ok {
		if e := v.Validate(); e != nil {
			return &exitError{code: exitUsage, msg: e.Error(),
				hint: fmt.Sprintf("Run '%s --help' for usage.", c.CommandPath())}
		}
	}

	// Only what was given: the server's defaults stand for the rest.
	method := r.Method()
	noBody := method == http.MethodGet || method == http.MethodDelete || method == http.MethodHead
	query := url.Values{}
	body := map[string]any{}
	for _, o := range rc.opts {
		if !c.Flags().Changed(o.flag) {
			continue
		}
		v := argv.FieldByIndex(o.Index)
		if o.Source == api.FromQuery || noBody {
			query[o.Name] = append(query[o.Name], queryValues(v)...)
		} else {
			body[o.Name] = v.Interface()
		}
	}
	var payload []byte
	if !noBody {
		var err error
		var wrapped any = body
		if r.Envelope != "" {
			wrapped = map[string]any{r.Envelope: body}
		}
		if payload, err = json.Marshal(wrapped); err != nil {
			return rc.usageErr("%v", err)
		}
	}

	resp, err := rc.app.callAs(rc.sp, method, path, query, payload)
	if err != nil {
		return err
	}
	return rc.app.printResponse(r, resp)
}
