package files

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"regexp"

	"golang.org/x/crypto/bcrypt"
)

// guiUser is the user of Syncthing's GUI that Prepare sets, with a random
// password that is never written down (only its bcrypt hash, in
// config.xml) and so known to nobody.
//
// Why a user nobody can log in as: without a user and password, Syncthing
// (v1.30.0, lib/api) guards /rest/* only with a CSRF token, and hands a
// valid CSRF cookie to any request outside /rest (GET / is enough); cookie
// and header then open every REST endpoint without the API key, so any
// local user could share / with a device of theirs. With a user and
// password set, its authentication middleware runs before the CSRF check
// and lets through only a valid API key, a session (made by logging in) or
// basic auth with the password; everything else under /rest answers 403.
// The API key is then the one credential that works.
const guiUser = "understudy"

// guiPasswordBytes is the entropy of the unknown password: 256 bits, hex
// encoded to 64 characters (bcrypt reads at most 72 bytes).
const guiPasswordBytes = 32

// bcryptHash matches what Syncthing takes for a bcrypt hash rather than a
// password to hash (lib/config.bcryptExpr, v1.30.0): a value that does not
// match would be compared as a hash and never match any password, but it
// would not be ours.
var bcryptHash = regexp.MustCompile(`^\$2[aby]\$\d+\$.{50,}`)

// guiPassword returns the bcrypt hash for the GUI user: the one in old
// (config.xml as it is, nil if none) when it is guiUser's, so that Prepare
// leaves a prepared home alone, else the hash of a new random password.
// Syncthing keeps the hash as written (it hashes only what is not one).
func guiPassword(old []byte) (string, error) {
	if old != nil {
		var in struct {
			GUI struct {
				User     string `xml:"user"`
				Password string `xml:"password"`
			} `xml:"gui"`
		}
		// A file that does not parse is refused by renderConfig with
		// the operator's fix; here it only means "no hash to keep".
		if xml.Unmarshal(old, &in) == nil && in.GUI.User == guiUser && bcryptHash.MatchString(in.GUI.Password) {
			return in.GUI.Password, nil
		}
	}
	b := make([]byte, guiPasswordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate syncthing GUI password: %w", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(b)), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash syncthing GUI password: %w", err)
	}
	return string(hash), nil
}
