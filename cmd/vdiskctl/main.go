// Command vdiskctl manages a vdiskd daemon through its REST API.
//
// Its commands are generated from the RPC table of package mgmt/api, the
// same table the server builds its routes from: `vdiskctl vdi snapshot
// <uuid>` is the call VDI.snapshot, its path arguments are positional and
// its other arguments are flags. login and logout are written by hand.
//
// Exit status: 0 success, 1 the API refused the call (or a task failed),
// 2 bad usage (nothing was sent), 3 the daemon could not be reached.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)) }

// Exit statuses.
const (
	exitOK        = 0
	exitAPI       = 1
	exitUsage     = 2
	exitTransport = 3
)

// exitError ends a run with a status. A non-empty msg is printed to stderr
// as "vdiskctl: msg", then hint on a line of its own.
type exitError struct {
	code int
	msg  string
	hint string
}

func (e *exitError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// app is one run of vdiskctl: its streams, environment and global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	// Global flags.
	url, token, configPath string
	jsonOut, insecure      bool
	wait                   bool
	field                  string
	project                string // --project: the Cinder project of cg commands

	cfg       *config // loaded on first use
	cfgLoaded bool
	cfgErr    error
}

// run is the whole program, minus os.Exit, so tests run it in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.newRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	return a.report(cmd, err)
}

// report prints err and returns the exit status it stands for.
func (a *app) report(cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// cobra's own errors: unknown command, bad flag, bad arguments.
		path := "vdiskctl"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		ee = &exitError{code: exitUsage, msg: err.Error(), hint: fmt.Sprintf("Run '%s --help' for usage.", path)}
	}
	if ee.msg != "" {
		fmt.Fprintf(a.stderr, "vdiskctl: %s\n", ee.msg)
	}
	if ee.hint != "" {
		fmt.Fprintln(a.stderr, ee.hint)
	}
	return ee.code
}

const rootLong = `vdiskctl manages a vdiskd daemon over its REST management API.

Log in once with 'vdiskctl login' (the token is stored in your config
directory), then call the API: every call of the API is a command, grouped
by class, named after the call with '-' for '_' (the '_' spelling works
too). Path arguments (a UUID, a guid, a user name) are positional; the
other arguments are flags.

  vdiskctl login --user admin
  vdiskctl vdi create --name-label disk0 --virtual-size 10G
  vdiskctl vdi enable-cbt <uuid>
  vdiskctl vdi snapshot <uuid>
  vdiskctl vdi list-changed-blocks <snapshot-uuid> --vdi-from <older-snapshot-uuid>
  vdiskctl vdi copy <uuid> --wait
  vdiskctl vpool list --json

Exit status: 0 success, 1 the API refused the call or a task failed,
2 bad usage (nothing was sent), 3 vdiskd could not be reached.`

func (a *app) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "vdiskctl",
		Short:         "Manage a vdiskd daemon over its REST API",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          a.groupArgs,
		RunE:          a.groupRun,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitUsage, msg: err.Error(), hint: fmt.Sprintf("Run '%s --help' for usage.", c.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "url", "", "vdiskd's base URL (env VDISKCTL_URL; default: the URL of the last login, else "+defaultURL+")")
	pf.StringVar(&a.token, "token", "", "API token (env VDISKCTL_TOKEN; default: the token of the last login to that URL)")
	pf.BoolVar(&a.jsonOut, "json", false, "print the JSON response as the server sent it, pretty-printed")
	pf.BoolVar(&a.insecure, "insecure", false, "skip TLS certificate verification for https URLs")
	pf.StringVar(&a.configPath, "config", "", "config file (env VDISKCTL_CONFIG; default $XDG_CONFIG_HOME/vdiskctl/config.json)")
	pf.BoolVar(&a.wait, "wait", false, "when the call answers with a task, wait for it to end and print its result")
	pf.StringVar(&a.project, "project", "", "the Cinder project (tenant) of the cg and cgsnapshot commands (env VDISKCTL_PROJECT; default \""+defaultProject+"\")")
	pf.StringVar(&a.field, "field", "", "print only this field of the answer (of each item of a list), one per line: --field uuid")

	root.AddCommand(a.loginCommand(), a.logoutCommand())
	a.addRPCCommands(root)
	return root
}

// groupArgs refuses a word that names no subcommand, with cobra's
// suggestions ("did you mean").
func (a *app) groupArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return &exitError{code: exitUsage, msg: msg, hint: fmt.Sprintf("Run '%s --help' for usage.", c.CommandPath())}
}

// groupRun: a group without a subcommand is a usage error; its help goes
// to stderr.
func (a *app) groupRun(c *cobra.Command, _ []string) error {
	c.SetOut(a.stderr)
	_ = c.Help()
	return &exitError{code: exitUsage}
}
