package files

import (
	"encoding/json"
	"net/http"
	"testing"
)

// FuzzFolderStatus: an answer of /rest/db/status, which comes over the
// network, never panics the decoder, and what decodes survives a round trip.
func FuzzFolderStatus(f *testing.F) {
	f.Add([]byte(`{"state":"idle","needBytes":0,"needTotalItems":0,"globalBytes":12,"localBytes":12,` +
		`"receiveOnlyTotalItems":2,"receiveOnlyChangedBytes":30,"errors":0,"error":"","remoteSequence":{}}`))
	f.Add([]byte(`{"state":"error","error":"folder path missing","needBytes":-1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"needBytes":1e400}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeFolderStatus(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(folderStatusJSON{
			State: st.State, NeedBytes: st.NeedBytes, NeedTotalItems: st.NeedItems,
			GlobalBytes: st.GlobalBytes, LocalBytes: st.LocalBytes,
			ReceiveOnlyTotalItems: st.ReceiveOnlyChangedItems, ReceiveOnlyChangedBytes: st.ReceiveOnlyChangedBytes,
			Errors: st.Errors, Error: st.Error,
		})
		if err != nil {
			t.Fatal(err)
		}
		st2, err := decodeFolderStatus(again)
		if err != nil || st2 != st {
			t.Fatalf("round trip of %+v: %+v, %v", st, st2, err)
		}
	})
}

// FuzzConfig: an answer of /rest/config never panics the decoder or the
// planner; every device ID that decodes is canonical, and planning an empty
// desired state removes every folder and every device but the node's own.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(`{"version":37,"devices":[{"deviceID":"` + idSelf + `","name":"a","addresses":["dynamic"]},` +
		`{"deviceID":"` + idB + `","name":"b","addresses":["tcp://127.0.0.1:22001"],"introducer":false}],` +
		`"folders":[{"id":"resources","path":"/srv/r","type":"sendonly","devices":[{"deviceID":"` + idB + `"}],` +
		`"fsWatcherDelayS":1,"versioning":{"type":""}}]}`))
	f.Add([]byte(`{"devices":[{"deviceID":""}]}`))
	f.Add([]byte(`{"folders":[{"id":"x","devices":[{"deviceID":"zzz"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := decodeConfig(data)
		if err != nil {
			return
		}
		others := 0
		for _, d := range cfg.Devices {
			if id, err := canonicalID(d.DeviceID); err != nil || id != d.DeviceID {
				t.Fatalf("device ID %q decoded, not canonical (%q, %v)", d.DeviceID, id, err)
			}
			if d.DeviceID != idSelf {
				others++
			}
		}
		calls, err := plan(idSelf, cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) != len(cfg.Folders)+others {
			t.Fatalf("plan of nothing made %d calls for %d folders and %d devices", len(calls), len(cfg.Folders), others)
		}
		for _, c := range calls {
			if c.method != http.MethodDelete {
				t.Fatalf("plan of nothing: %s %s", c.method, c.path)
			}
		}
	})
}
