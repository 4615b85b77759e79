package files

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/syncthing/syncthing/lib/protocol"
)

var (
	idSelf = protocol.NewDeviceID([]byte("self")).String()
	idB    = protocol.NewDeviceID([]byte("b")).String()
	idC    = protocol.NewDeviceID([]byte("c")).String()
)

func dev(id, name string) Device {
	return Device{ID: id, Name: name, Addresses: []string{"tcp://10.0.0." + name + ":22000"}}
}

func fold(id string, sendOnly bool) Folder {
	return Folder{ID: id, Label: strings.ToUpper(id), Path: "/srv/" + id, SendOnly: sendOnly}
}

// syncthingHas is the configuration Syncthing reports after applying
// devices and folders: its own device too, folders shared with it.
func syncthingHas(t *testing.T, devices []Device, folders []Folder) configJSON {
	t.Helper()
	ds, err := desiredDevices(idSelf, devices)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := desiredFolders(idSelf, ds, folders)
	if err != nil {
		t.Fatal(err)
	}
	// Syncthing lists devices sorted by ID, itself among them.
	ds = append(ds, deviceJSON{DeviceID: idSelf, Name: "self", Addresses: []string{"dynamic"}})
	slices.SortFunc(ds, func(a, b deviceJSON) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	return configJSON{Devices: ds, Folders: fs}
}

func TestPlan(t *testing.T) {
	lower := strings.ToLower(strings.ReplaceAll(idB, "-", ""))
	tests := []struct {
		name    string
		have    configJSON
		devices []Device
		folders []Folder
		want    []string // method path
	}{
		{"empty syncthing gets devices, then folders", configJSON{Devices: []deviceJSON{{DeviceID: idSelf}}},
			[]Device{dev(idB, "b"), dev(idC, "c")}, []Folder{fold("res", false)},
			[]string{"PUT /rest/config/devices/" + idB, "PUT /rest/config/devices/" + idC, "PUT /rest/config/folders/res"}},
		{"nothing when it matches", syncthingHas(t, []Device{dev(idB, "b")}, []Folder{fold("res", true)}),
			[]Device{dev(idB, "b")}, []Folder{fold("res", true)}, nil},
		{"own device and other spellings of an ID are the same device", syncthingHas(t, []Device{dev(idB, "b")}, []Folder{fold("res", true)}),
			[]Device{dev(idSelf, "self"), {ID: lower, Name: "b", Addresses: dev(idB, "b").Addresses}}, []Folder{fold("res", true)}, nil},
		{"new address rewrites the device only", syncthingHas(t, []Device{dev(idB, "b")}, []Folder{fold("res", true)}),
			[]Device{{ID: idB, Name: "b", Addresses: []string{"tcp://10.0.0.9:22000"}}}, []Folder{fold("res", true)},
			[]string{"PUT /rest/config/devices/" + idB}},
		{"another type rewrites the folder", syncthingHas(t, []Device{dev(idB, "b")}, []Folder{fold("res", true)}),
			[]Device{dev(idB, "b")}, []Folder{fold("res", false)},
			[]string{"PUT /rest/config/folders/res"}},
		{"removed device: folders first, then the device", syncthingHas(t, []Device{dev(idB, "b"), dev(idC, "c")}, []Folder{fold("res", true)}),
			[]Device{dev(idB, "b")}, []Folder{fold("res", true)},
			[]string{"PUT /rest/config/folders/res", "DELETE /rest/config/devices/" + idC}},
		{"folder not listed is removed", syncthingHas(t, []Device{dev(idB, "b")}, []Folder{fold("res", true), fold("old", true)}),
			[]Device{dev(idB, "b")}, []Folder{fold("res", true)},
			[]string{"DELETE /rest/config/folders/old"}},
		{"folder ID is escaped", configJSON{}, nil, []Folder{fold("a b?", true)},
			[]string{"PUT /rest/config/folders/a%20b%3F"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls, err := plan(idSelf, tc.have, tc.devices, tc.folders)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range calls {
				got = append(got, c.method+" "+c.path)
				if (c.method == http.MethodPut) != (c.body != nil) {
					t.Errorf("%s %s with body %v", c.method, c.path, c.body)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("plan\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// What Apply writes for a folder is what Syncthing is asked for: shared with
// itself and every device, watched with a 1 s delay, no versioning, owners
// sent and applied.
func TestPlanFolderBody(t *testing.T) {
	calls, err := plan(idSelf, configJSON{}, []Device{dev(idB, "b")}, []Folder{fold("res", false)})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(calls[len(calls)-1].body)
	var f folderJSON
	if err := json.Unmarshal(body, &f); err != nil {
		t.Fatal(err)
	}
	want := folderJSON{ID: "res", Label: "RES", Path: "/srv/res", Type: "receiveonly",
		Devices:         sorted2(folderDeviceJSON{idSelf}, folderDeviceJSON{idB}),
		RescanIntervalS: 60, FSWatcherEnabled: true, FSWatcherDelayS: 1,
		SendOwnership: true, SyncOwnership: true}
	if !sameFolder(f, want) {
		t.Errorf("folder body %s, want %+v", body, want)
	}
}

func sorted2(ds ...folderDeviceJSON) []folderDeviceJSON {
	sortFolderDevices(ds)
	return ds
}

func TestPlanRejects(t *testing.T) {
	tests := []struct {
		name    string
		devices []Device
		folders []Folder
		want    string
	}{
		{"device twice", []Device{dev(idB, "b"), dev(idB, "b2")}, nil, "listed twice"},
		{"device without address", []Device{{ID: idB, Name: "b"}}, nil, "no address"},
		{"bad device ID", []Device{{ID: "not-an-id", Name: "x", Addresses: []string{"tcp://x:1"}}}, nil, "device ID"},
		{"empty device ID", []Device{{Name: "x", Addresses: []string{"tcp://x:1"}}}, nil, "empty"},
		{"folder twice", nil, []Folder{fold("res", true), fold("res", false)}, "listed twice"},
		{"folder with /", nil, []Folder{fold("a/b", true)}, "no /"},
		{"relative path", nil, []Folder{{ID: "res", Path: "srv/res"}}, "not absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := plan(idSelf, configJSON{}, tc.devices, tc.folders); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("plan = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
