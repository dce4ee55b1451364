package ctap2

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"testing"
)

// pythonWithFido2 returns an interpreter that can import python-fido2: Debian's
// /usr/bin/python3 first (the python3 on PATH may be another installation).
func pythonWithFido2() string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(py); err == nil && exec.Command(path, "-c", "import fido2.ctap2.pin").Run() == nil {
			return path
		}
	}
	return ""
}

// TestPINVectorsRegenerate re-runs gen_pin_vectors.py and demands the committed
// pin_vectors.json, so the golden file cannot drift from what python-fido2
// computes. Without python-fido2 it skips, except under CI, where it fails.
func TestPINVectorsRegenerate(t *testing.T) {
	py := pythonWithFido2()
	if py == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set but no python3 with python-fido2 (Debian package python3-fido2) was found")
		}
		t.Skip("no python3 with python-fido2 (install python3-fido2)")
	}
	cmd := exec.Command(py, "testdata/gen_pin_vectors.py", "-o", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gen_pin_vectors.py: %v\n%s", err, stderr.Bytes())
	}
	committed, err := testdata.ReadFile("testdata/pin_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(out, committed) {
		return
	}
	// Another python-fido2 release may only change the version string.
	var got, want map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("script output: %v", err)
	}
	if err := json.Unmarshal(committed, &want); err != nil {
		t.Fatal(err)
	}
	t.Logf("python-fido2 %v generated the file, %v is installed", want["pythonFido2"], got["pythonFido2"])
	delete(got, "pythonFido2")
	delete(want, "pythonFido2")
	if !reflect.DeepEqual(got, want) {
		t.Error("gen_pin_vectors.py output differs from testdata/pin_vectors.json; " +
			"if python-fido2 is right, regenerate with /usr/bin/python3 ctap2/testdata/gen_pin_vectors.py and review the diff")
	}
}
