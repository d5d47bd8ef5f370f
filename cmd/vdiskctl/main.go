// Command vdiskctl manages a vdiskd daemon through its REST API.
//
// The REST API is not served yet (see the issue "Management: REST API ...");
// until it is, vdiskctl only explains that and exits non-zero, so no script
// mistakes it for a working client.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `vdiskctl manages a vdiskd daemon over its REST API.

Usage: vdiskctl <command> [arguments]

The management API is not available in this build yet: vdiskd currently
serves only its block store. Commands (login, vpool, vdi) arrive with it.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}
