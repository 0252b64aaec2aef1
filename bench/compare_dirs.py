"""Compare two result folders byte by byte (with bench/baseline_demo.sh): files only in one, files that differ."""
import sys
from pathlib import Path

a, b = Path(sys.argv[1]), Path(sys.argv[2])
fa = {p.relative_to(a): p for p in a.rglob("*") if p.is_file()}
fb = {p.relative_to(b): p for p in b.rglob("*") if p.is_file()}
print("only in a:", sorted(map(str, set(fa) - set(fb))))
print("only in b:", sorted(map(str, set(fb) - set(fa))))
diff = [str(k) for k in sorted(set(fa) & set(fb)) if fa[k].read_bytes() != fb[k].read_bytes()]
print(f"{len(set(fa) & set(fb))} common files, {len(diff)} differ:", diff)
sys.exit(1 if diff or set(fa) ^ set(fb) else 0)
