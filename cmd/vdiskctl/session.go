package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"golang.org/x/term"
)

// The session calls are written by hand: login takes a password, not a
// token, and both keep the config.

func (a *app) loginCommand() *cobra.Command {
	var user string
	var passwordStdin bool
	c := &cobra.Command{
		Use:   "login",
		Short: "Log in: exchange a user's password for a token and store it",
		Long: api.TokenCreate.Summary + `

vdiskctl login sends POST ` + api.TokenCreate.Path + ` with Basic user:password and stores the
URL, user name and token in the config file (--config, VDISKCTL_CONFIG, or
vdiskctl/config.json in your config directory; mode 0600). Later calls to
the same URL carry the token.

The password is read from stdin with --password-stdin (first line), else
from $VDISKCTL_PASSWORD, else prompted for without echo on a terminal.
The user is --user, else $VDISKCTL_USER, else the last login's, else admin.`,
		Args: a.noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return a.login(user, passwordStdin) },
	}
	c.Flags().StringVar(&user, "user", "", "user name (env VDISKCTL_USER; default: the last login's, else admin)")
	c.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
	return c
}

func (a *app) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Log out: revoke the token and forget it",
		Long: api.TokenDelete.Summary + `

vdiskctl logout sends DELETE ` + api.TokenDelete.Path + ` with the token, then removes it from the
config file. A token the server no longer knows is removed too; if the
server cannot be reached the token is kept, so a later logout can revoke it.`,
		Args: a.noArgs,
		RunE: func(*cobra.Command, []string) error { return a.logout() },
	}
}

func (a *app) noArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return &exitError{code: exitUsage, msg: fmt.Sprintf("%s takes no arguments, got %q", c.CommandPath(), args),
		hint: fmt.Sprintf("Run '%s --help' for usage.", c.CommandPath())}
}

// tokenAnswer is api.Token with the role as text, so an unknown role does
// not make a login fail.
type tokenAnswer struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Role      string    `json:"role"`
	Username  string    `json:"username"`
}

func (a *app) login(user string, passwordStdin bool) error {
	base, err := a.baseURL()
	if err != nil {
		return err
	}
	if user == "" {
		user = a.getenv("VDISKCTL_USER")
	}
	if user == "" {
		if c, err := a.config(); err == nil && sameURL(c.URL, base) {
			user = c.Username
		}
	}
	if user == "" {
		user = "admin"
	}
	password, err := a.password(user, base, passwordStdin)
	if err != nil {
		return err
	}

	resp, err := a.send(base, api.TokenCreate.Method(), api.TokenCreate.Path, nil, nil, basic(user, password))
	if err != nil {
		return err
	}
	if resp.status >= 300 {
		err := apiError(resp)
		if resp.status == http.StatusUnauthorized {
			err.(*exitError).hint = "Check the user name and password."
		}
		return err
	}
	var tok tokenAnswer
	if err := json.Unmarshal(resp.body, &tok); err != nil || tok.Token == "" {
		return &exitError{code: exitAPI, msg: fmt.Sprintf("login: the server answered %s without a token", resp.line)}
	}
	if tok.Username == "" {
		tok.Username = user
	}

	c, err := a.config()
	if err != nil {
		c = &config{} // a broken config is replaced
	}
	nc := *c
	nc.URL, nc.Username, nc.Token, nc.ExpiresAt = base, tok.Username, tok.Token, tok.ExpiresAt
	if err := a.saveConfig(&nc); err != nil {
		return err
	}
	if a.jsonOut {
		return printJSON(a.stdout, resp.body)
	}
	fmt.Fprintf(a.stdout, "Logged in to %s as %s (%s); the token expires %s.\n",
		base, tok.Username, tok.Role, tok.ExpiresAt.Local().Format(time.RFC3339))
	return nil
}

// password reads the password: from stdin when asked, else the
// environment, else a prompt on the terminal.
func (a *app) password(user, base string, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(a.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", &exitError{code: exitUsage, msg: fmt.Sprintf("reading the password from stdin: %v", err)}
		}
		p := strings.TrimRight(line, "\r\n")
		if p == "" {
			return "", usageErrorf("--password-stdin: stdin holds no password")
		}
		return p, nil
	}
	if p := a.getenv("VDISKCTL_PASSWORD"); p != "" {
		return p, nil
	}
	if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(a.stderr, "Password for %s at %s: ", user, base)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", &exitError{code: exitUsage, msg: fmt.Sprintf("reading the password: %v", err)}
		}
		if len(b) == 0 {
			return "", usageErrorf("no password given")
		}
		return string(b), nil
	}
	return "", &exitError{code: exitUsage, msg: "no password: stdin is not a terminal",
		hint: "Pass --password-stdin and pipe it in, or set VDISKCTL_PASSWORD."}
}

func (a *app) logout() error {
	base, err := a.baseURL()
	if err != nil {
		return err
	}
	tok, fromConfig, err := a.resolveToken(base)
	if err != nil {
		return err
	}
	if tok == "" {
		fmt.Fprintf(a.stderr, "vdiskctl: not logged in to %s\n", base)
		return nil
	}
	resp, err := a.send(base, api.TokenDelete.Method(), api.TokenDelete.Path, nil, nil, bearer(tok))
	if err != nil {
		return err // keep the token: it is still valid
	}
	if resp.status >= 300 && resp.status != http.StatusUnauthorized {
		return apiError(resp)
	}
	if c, err := a.config(); err == nil && c.Token != "" && (fromConfig || c.Token == tok) {
		nc := *c
		nc.Token, nc.ExpiresAt = "", time.Time{}
		if err := a.saveConfig(&nc); err != nil {
			return err
		}
	}
	fmt.Fprintf(a.stdout, "Logged out of %s.\n", base)
	return nil
}
