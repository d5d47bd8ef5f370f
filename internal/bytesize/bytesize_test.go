package bytesize

import "testing"

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "4096": 4096, "-1": -1, "10G": 10 << 30, "1g": 1 << 30, "1GiB": 1 << 30, "1gib": 1 << 30,
		"2K": 2048, "3KiB": 3072, "5M": 5 << 20, "5MiB": 5 << 20, "1T": 1 << 40, "1TiB": 1 << 40,
		"1.5G": 3 << 29, "0.5K": 512, "7B": 7, " 1G ": 1 << 30, "1 G": 1 << 30, "256T": 1 << 48,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "1X", "1KB", "1.5", "0.1K", "-1G", "1e3", "9999999T", "1..5G"} {
		if n, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", in, n)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 10 << 30: "10 GiB",
		1 << 48: "256 TiB", 3<<29 + 1: "1.5 GiB",
	} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}
