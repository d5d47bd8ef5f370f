package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// config is what login stores: where the daemon is and the token it gave.
type config struct {
	URL       string    `json:"url,omitempty"`
	Username  string    `json:"username,omitempty"`
	Token     string    `json:"token,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

const defaultURL = "http://127.0.0.1:8080"

// configFile is the config's path: --config, VDISKCTL_CONFIG, else
// vdiskctl/config.json in the user's config directory. isDefault says it
// is the last, a directory vdiskctl owns.
func (a *app) configFile() (path string, isDefault bool, err error) {
	if a.configPath != "" {
		return a.configPath, false, nil
	}
	if p := a.getenv("VDISKCTL_CONFIG"); p != "" {
		return p, false, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", false, &exitError{code: exitUsage, msg: fmt.Sprintf("no config directory (%v)", err),
			hint: "Set VDISKCTL_CONFIG or pass --config."}
	}
	return filepath.Join(dir, "vdiskctl", "config.json"), true, nil
}

// config loads the config once. A missing file is an empty config.
func (a *app) config() (*config, error) {
	if a.cfgLoaded {
		return a.cfg, a.cfgErr
	}
	a.cfgLoaded = true
	a.cfg, a.cfgErr = a.loadConfig()
	return a.cfg, a.cfgErr
}

func (a *app) loadConfig() (*config, error) {
	path, _, err := a.configFile()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &config{}, nil
	}
	if err != nil {
		return nil, &exitError{code: exitAPI, msg: fmt.Sprintf("reading the config: %v", err)}
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, &exitError{code: exitAPI, msg: fmt.Sprintf("config %s: %v", path, err),
			hint: "Fix or remove it, then run 'vdiskctl login'."}
	}
	return &c, nil
}

// saveConfig replaces the config file atomically, mode 0600, in a
// directory created 0700.
func (a *app) saveConfig(c *config) error {
	path, isDefault, err := a.configFile()
	if err != nil {
		return err
	}
	fail := func(err error) error {
		return &exitError{code: exitAPI, msg: fmt.Sprintf("writing the config %s: %v", path, err)}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	if isDefault {
		// Ours alone: it holds a credential.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fail(err)
		}
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fail(err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fail(err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	a.cfg, a.cfgErr, a.cfgLoaded = c, nil, true
	return nil
}

// baseURL is the daemon's URL: --url, VDISKCTL_URL, the config's, the
// default; without a trailing slash.
func (a *app) baseURL() (string, error) {
	u := a.url
	if u == "" {
		u = a.getenv("VDISKCTL_URL")
	}
	if u == "" {
		c, err := a.config()
		if err != nil {
			return "", err
		}
		u = c.URL
	}
	if u == "" {
		u = defaultURL
	}
	return checkURL(u)
}

// token is the bearer token: --token, VDISKCTL_TOKEN, else the config's
// when it was issued by the same URL (a token is never sent to another
// server). fromConfig says it came from the config.
func (a *app) resolveToken(base string) (tok string, fromConfig bool, err error) {
	if a.token != "" {
		return a.token, false, nil
	}
	if t := a.getenv("VDISKCTL_TOKEN"); t != "" {
		return t, false, nil
	}
	c, err := a.config()
	if err != nil {
		return "", false, err
	}
	if c.Token != "" && sameURL(c.URL, base) {
		return c.Token, true, nil
	}
	return "", false, nil
}

func sameURL(a, b string) bool {
	return strings.TrimRight(a, "/") == strings.TrimRight(b, "/")
}
