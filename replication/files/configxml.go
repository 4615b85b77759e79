package files

import (
	"encoding/xml"
	"fmt"
)

// configVersion is the config.xml format of Syncthing v1.30.0
// (lib/config.CurrentVersion, checked by a test). A new file gets it, so
// Syncthing neither migrates nor archives it; an existing file keeps its own,
// so a Syncthing that wrote a newer format refuses it rather than misreading
// it, and an older one is migrated by Syncthing.
const configVersion = 37

// reconnectIntervalS is how often Syncthing redials a peer it is not
// connected to (default 60, minimum 5). A peer that restarts dials out at
// once, but after a partition heals both sides would wait up to a minute;
// standbys are promised to be in sync within 10 s.
const reconnectIntervalS = 10

// configValues are the parts of config.xml that Prepare decides.
type configValues struct {
	myID, nodeName, listen, apiAddress, apiKey string
	// guiPasswordHash is the bcrypt hash of the GUI user's password.
	guiPasswordHash string
}

// xmlElement is a child element of <configuration> kept verbatim: folders
// and devices that Apply configured and Syncthing saved, and anything else
// Prepare does not own (defaults, ldap, ignored devices).
type xmlElement struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   []byte     `xml:",innerxml"`
}

type xmlConfigIn struct {
	XMLName  xml.Name     `xml:"configuration"`
	Version  int          `xml:"version,attr"`
	Elements []xmlElement `xml:",any"`
}

// xmlConfigOut is the file Prepare writes. Syncthing's ReadXML fills every
// element left out with its default, so only what differs is written.
type xmlConfigOut struct {
	XMLName xml.Name     `xml:"configuration"`
	Version int          `xml:"version,attr"`
	Self    xmlDevice    `xml:"device"`
	Kept    []xmlElement `xml:",any"`
	GUI     xmlGUI       `xml:"gui"`
	Options xmlOptions   `xml:"options"`
}

// xmlDevice is this node's own device, present so that it carries the node
// name (Syncthing would add it named after the host name).
type xmlDevice struct {
	ID        string   `xml:"id,attr"`
	Name      string   `xml:"name,attr"`
	Addresses []string `xml:"address"`
}

// xmlGUI is the REST API: plain HTTP on APIAddress (loopback; Syncthing's
// own HTTPS would need a certificate of its own), the API key its only
// usable credential. User and Password are there to switch on Syncthing's
// authentication (guiUser), not to be used: see guiPassword.
type xmlGUI struct {
	Enabled  bool   `xml:"enabled,attr"`
	TLS      bool   `xml:"tls,attr"`
	Address  string `xml:"address"`
	User     string `xml:"user"`
	Password string `xml:"password"`
	APIKey   string `xml:"apikey"`
}

// xmlOptions keeps Syncthing to the cluster: peers are configured with
// their addresses by Apply, so nothing is discovered, relayed, opened in a
// router, reported to syncthing.net or upgraded behind the package's back.
// Element names are lib/config.OptionsConfiguration's xml tags.
type xmlOptions struct {
	// One TCP listener on the node's address: no QUIC, no relays, not the
	// "default" set that listens on every interface.
	ListenAddresses      []string `xml:"listenAddress"`
	GlobalAnnEnabled     bool     `xml:"globalAnnounceEnabled"`
	LocalAnnEnabled      bool     `xml:"localAnnounceEnabled"`
	ReconnectIntervalS   int      `xml:"reconnectionIntervalS"`
	RelaysEnabled        bool     `xml:"relaysEnabled"`
	StartBrowser         bool     `xml:"startBrowser"`
	NATEnabled           bool     `xml:"natEnabled"`
	URAccepted           int      `xml:"urAccepted"` // -1: declined, never asked again
	AutoUpgradeIntervalH int      `xml:"autoUpgradeIntervalH"`
	CREnabled            bool     `xml:"crashReportingEnabled"`
}

// renderConfig returns config.xml for v: old (nil when there is none) with
// its GUI, options and own device replaced, and everything else kept.
func renderConfig(old []byte, v configValues) ([]byte, error) {
	out := xmlConfigOut{
		Version: configVersion,
		Self:    xmlDevice{ID: v.myID, Name: v.nodeName, Addresses: []string{"dynamic"}},
		GUI: xmlGUI{Enabled: true, Address: v.apiAddress, APIKey: v.apiKey,
			User: guiUser, Password: v.guiPasswordHash},
		Options: xmlOptions{
			ListenAddresses:    []string{"tcp://" + v.listen},
			ReconnectIntervalS: reconnectIntervalS,
			URAccepted:         -1,
		},
	}
	if old != nil {
		var in xmlConfigIn
		if err := xml.Unmarshal(old, &in); err != nil {
			return nil, fmt.Errorf("not a Syncthing configuration (%w); move it aside and start again: understudy writes a new one and Apply restores devices and folders", err)
		}
		if in.Version > 0 {
			out.Version = in.Version
		}
		for _, e := range in.Elements {
			if e.XMLName.Local == "gui" || e.XMLName.Local == "options" || isDevice(e, v.myID) {
				continue
			}
			out.Kept = append(out.Kept, e)
		}
	}
	data, err := xml.MarshalIndent(out, "", "    ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(data, '\n')...), nil
}

// isDevice reports whether e is the <device> element of id.
func isDevice(e xmlElement, id string) bool {
	if e.XMLName.Local != "device" {
		return false
	}
	for _, a := range e.Attrs {
		if a.Name.Local == "id" {
			got, err := canonicalID(a.Value)
			return err == nil && got == id
		}
	}
	return false
}
