package webauthn

import "testing"

func TestCollectedClientDataJSON(t *testing.T) {
	for _, tc := range []struct {
		c    CollectedClientData
		want string
	}{
		{CollectedClientData{Type: TypeCreate, Challenge: []byte{0xfb, 0xff}, Origin: "https://example.com"},
			`{"type":"webauthn.create","challenge":"-_8","origin":"https://example.com","crossOrigin":false}`},
		{CollectedClientData{Type: TypeGet, Challenge: []byte("x"), Origin: "https://a\"b\\c\x01\u00e9", CrossOrigin: true, TopOrigin: "https://top.example"},
			`{"type":"webauthn.get","challenge":"eA","origin":"https://a\"b\\c\u0001` + "\u00e9" + `","crossOrigin":true,"topOrigin":"https://top.example"}`},
	} {
		if got := string(tc.c.JSON()); got != tc.want {
			t.Errorf("JSON() =\n%s\nwant\n%s", got, tc.want)
		}
		if len(tc.c.Hash()) != 32 {
			t.Error("hash is not 32 bytes")
		}
	}
}
