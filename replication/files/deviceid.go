package files

import (
	"crypto/tls"
	"fmt"
	"path/filepath"

	"github.com/syncthing/syncthing/lib/protocol"
)

// DeviceID is the Syncthing device ID of the certificate in certFile (the
// first one, the leaf): what Syncthing itself derives from the same file,
// computed by Syncthing's own lib/protocol so the two cannot differ.
func DeviceID(certFile, keyFile string) (string, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return "", fmt.Errorf("syncthing device ID: %w", err)
	}
	return protocol.NewDeviceID(c.Certificate[0]).String(), nil
}

// HomeDeviceID is the device ID of the identity Prepare installed in home:
// the one the Syncthing running from home presents to its peers.
func HomeDeviceID(home string) (string, error) {
	return DeviceID(filepath.Join(home, certName), filepath.Join(home, keyName))
}

// canonicalID parses a device ID in any form Syncthing accepts (with or
// without dashes, lower case) and returns its canonical string, so that IDs
// from the configuration and from Syncthing compare equal.
func canonicalID(id string) (string, error) {
	d, err := protocol.DeviceIDFromString(id)
	if err != nil {
		return "", fmt.Errorf("device ID %q: %w", id, err)
	}
	// lib/protocol reads "" as the empty ID without an error.
	if d == protocol.EmptyDeviceID {
		return "", fmt.Errorf("device ID %q is empty", id)
	}
	return d.String(), nil
}
