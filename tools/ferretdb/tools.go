//go:build tools

// Package tools pins FerretDB, the MongoDB wire-protocol server the test suites run
// against (no MongoDB server can be installed on the CI machines). Built by
// tools/ferretdb/build.sh into tools/bin/ferretdb.
package tools

import _ "github.com/FerretDB/FerretDB/cmd/ferretdb"
