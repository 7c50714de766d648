// An independent verifier of edged's proofs, written against Go's own
// golang.org/x/mod/sumdb/note and sumdb/tlog (Debian's golang-golang-x-mod-dev), so that
// edged's checkpoints and proofs are checked by code that edged did not write.
//
// Usage: verify_edged PROOF.json   (exit 0: proven; 1: not)
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type proofDoc struct {
	Kind        string   `json:"kind"`
	Checkpoint  string   `json:"checkpoint"`
	Old         string   `json:"old"`
	Leaf        int64    `json:"leaf"`
	Record      string   `json:"record"`
	Proof       []string `json:"proof"`
	VerifierKey string   `json:"verifier_key"`
}

// checkpoint opens a signed note and reads the C2SP checkpoint in it: origin, size, root.
func checkpoint(msg string, v note.Verifier) (string, int64, tlog.Hash) {
	n, err := note.Open([]byte(msg), note.VerifierList(v))
	if err != nil {
		fail("note: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		fail("checkpoint: want origin, size, root")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		fail("checkpoint root: %v", err)
	}
	var root tlog.Hash
	copy(root[:], raw)
	return lines[0], size, root
}

func hashes(in []string) []tlog.Hash {
	out := make([]tlog.Hash, len(in))
	for i, s := range in {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != tlog.HashSize {
			fail("proof hash %d: %v", i, err)
		}
		copy(out[i][:], raw)
	}
	return out
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var doc proofDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		fail("%v", err)
	}
	v, err := note.NewVerifier(doc.VerifierKey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	origin, size, root := checkpoint(doc.Checkpoint, v)
	switch doc.Kind {
	case "inclusion":
		leaf := tlog.RecordHash([]byte(doc.Record))
		if err := tlog.CheckRecord(hashes(doc.Proof), size, root, doc.Leaf, leaf); err != nil {
			fail("inclusion: %v", err)
		}
		fmt.Printf("OK: leaf %d in %s's log of %d\n", doc.Leaf, origin, size)
	case "consistency":
		_, oldSize, oldRoot := checkpoint(doc.Old, v)
		if err := tlog.CheckTree(hashes(doc.Proof), size, root, oldSize, oldRoot); err != nil {
			fail("consistency: %v", err)
		}
		fmt.Printf("OK: %s's log of %d extends its log of %d\n", origin, size, oldSize)
	default:
		fail("unknown kind %q", doc.Kind)
	}
}
