// An independent verifier of edged's proofs, written against Go's own
// golang.org/x/mod/sumdb/note and sumdb/tlog (Debian's golang-golang-x-mod-dev), so that
// edged's checkpoints and proofs are checked by code that edged did not write.
//
// The device's keys change every epoch (docs/proofs.md): the document's verifier key is
// the enrolled identity (epoch 0), and its epoch certificates lead from it to later keys.
// Each certificate is a record whose SHA-256 the previous epoch's key signed
// (crypto/ed25519, Go's standard library), naming the next key and its own leaf.
//
// Usage: verify_edged PROOF.json   (exit 0: proven; 1: not)
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type cert struct {
	Record string `json:"record"`
	Sig    string `json:"sig"`
}

type proofDoc struct {
	Kind        string   `json:"kind"`
	Checkpoint  string   `json:"checkpoint"`
	Old         string   `json:"old"`
	Leaf        int64    `json:"leaf"`
	Record      string   `json:"record"`
	Sig         string   `json:"sig"`
	Proof       []string `json:"proof"`
	VerifierKey string   `json:"verifier_key"`
	Epochs      []cert   `json:"epochs"`
}

// One signing epoch: its key, the seq its records come after, and the leaf of the
// certificate that began it (its checkpoints are of larger trees).
type epoch struct {
	key      ed25519.PublicKey
	afterSeq int64
	leaf     int64
	verifier note.Verifier
}

type fields struct {
	Type      string `json:"type"`
	Seq       int64  `json:"seq"`
	Epoch     int64  `json:"epoch"`
	NextEpoch int64  `json:"next_epoch"`
	NextKey   string `json:"next_key"`
	Leaf      int64  `json:"leaf"`
}

// vkey is the verifier key string note.NewVerifier takes for an Ed25519 key.
func vkey(name string, key ed25519.PublicKey) note.Verifier {
	raw := append([]byte{1}, key...)
	h := sha256.Sum256(append([]byte(name+"\n"), raw...))
	s := fmt.Sprintf("%s+%08x+%s", name, binary.BigEndian.Uint32(h[:4]),
		base64.StdEncoding.EncodeToString(raw))
	v, err := note.NewVerifier(s)
	if err != nil {
		fail("verifier key: %v", err)
	}
	return v
}

// signedBy checks a record's signature (over the SHA-256 of its body) by its epoch's
// key, and that its seq lies in that epoch.
func signedBy(epochs []epoch, body string, sig string) fields {
	var f fields
	if err := json.Unmarshal([]byte(body), &f); err != nil {
		fail("record: %v", err)
	}
	if f.Epoch < 0 || f.Epoch >= int64(len(epochs)) {
		fail("record seq %d: signed in epoch %d, which no certificate introduces", f.Seq, f.Epoch)
	}
	e := epochs[f.Epoch]
	if f.Seq <= e.afterSeq || (f.Epoch+1 < int64(len(epochs)) && f.Seq > epochs[f.Epoch+1].afterSeq) {
		fail("record seq %d is not in epoch %d", f.Seq, f.Epoch)
	}
	raw, err := hex.DecodeString(sig)
	digest := sha256.Sum256([]byte(body))
	if err != nil || !ed25519.Verify(e.key, digest[:], raw) {
		fail("record seq %d: bad signature (epoch %d)", f.Seq, f.Epoch)
	}
	return f
}

// chain follows the certificates from the identity key: each one signed by the key of
// the epoch before, each naming the next.
func chain(identity note.Verifier, vkeyText string, certs []cert) []epoch {
	parts := strings.SplitN(vkeyText, "+", 3) // name+hash+key (the name has no '+')
	raw, err := base64.StdEncoding.DecodeString(parts[len(parts)-1])
	if err != nil || len(raw) != 33 || raw[0] != 1 {
		fail("verifier key: not an Ed25519 key")
	}
	epochs := []epoch{{ed25519.PublicKey(raw[1:]), 0, -1, identity}}
	for i, c := range certs {
		f := signedBy(epochs, c.Record, c.Sig)
		if f.Type != "key.epoch" || f.NextEpoch != int64(i+1) || f.Epoch != int64(i) {
			fail("epoch certificate %d: not the certificate of epoch %d", i, i+1)
		}
		key, err := hex.DecodeString(f.NextKey)
		if err != nil || len(key) != ed25519.PublicKeySize || f.Leaf <= epochs[i].leaf {
			fail("epoch certificate %d: bad next key or leaf", i)
		}
		epochs = append(epochs, epoch{key, f.Seq, f.Leaf, vkey(identity.Name(), key)})
	}
	return epochs
}

// checkpoint opens a signed note with the epochs' keys and reads the C2SP checkpoint in
// it (origin, size, root); the size must be one the signing epoch can have signed.
func checkpoint(msg string, epochs []epoch) (string, int64, tlog.Hash) {
	var vs []note.Verifier
	for _, e := range epochs {
		vs = append(vs, e.verifier)
	}
	n, err := note.Open([]byte(msg), note.VerifierList(vs...))
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
	for i, e := range epochs {
		if e.verifier.KeyHash() != n.Sigs[0].Hash {
			continue
		}
		if size <= e.leaf || (i+1 < len(epochs) && size > epochs[i+1].leaf) {
			fail("checkpoint of %d records signed in epoch %d, which cannot have signed it", size, i)
		}
	}
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
	epochs := chain(v, doc.VerifierKey, doc.Epochs)
	origin, size, root := checkpoint(doc.Checkpoint, epochs)
	switch doc.Kind {
	case "inclusion":
		leaf := tlog.RecordHash([]byte(doc.Record))
		if err := tlog.CheckRecord(hashes(doc.Proof), size, root, doc.Leaf, leaf); err != nil {
			fail("inclusion: %v", err)
		}
		signedBy(epochs, doc.Record, doc.Sig)
		fmt.Printf("OK: leaf %d in %s's log of %d\n", doc.Leaf, origin, size)
	case "consistency":
		_, oldSize, oldRoot := checkpoint(doc.Old, epochs)
		if err := tlog.CheckTree(hashes(doc.Proof), size, root, oldSize, oldRoot); err != nil {
			fail("consistency: %v", err)
		}
		fmt.Printf("OK: %s's log of %d extends its log of %d\n", origin, size, oldSize)
	default:
		fail("unknown kind %q", doc.Kind)
	}
}
