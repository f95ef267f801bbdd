#!/usr/bin/env bash
# Refresh the web console's vendored browser libraries (src/llmflow/web/assets/vendor/) from
# the npm registry. Run by a maintainer when upgrading; nothing runs Node at install or at
# run time: the files below are package data, served as they are (ES modules, no build).
#   marked      Markdown -> HTML            (MIT)
#   dompurify   HTML sanitiser              (Apache-2.0 OR MPL-2.0)
#   diff        jsdiff: line diffs           (BSD-3-Clause)
#   @dagrejs/dagre  layered graph layout     (MIT)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=src/llmflow/web/assets/vendor
MARKED=${MARKED:-18.2.1} DOMPURIFY=${DOMPURIFY:-3.5.0} JSDIFF=${JSDIFF:-9.0.0} DAGRE=${DAGRE:-3.1.3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "marked@$MARKED" "dompurify@$DOMPURIFY" "diff@$JSDIFF" "@dagrejs/dagre@$DAGRE" >/dev/null)
unpack() { mkdir -p "$tmp/$1" && tar xzf "$tmp"/$2 -C "$tmp/$1"; }
unpack marked "marked-$MARKED.tgz"
unpack dompurify "dompurify-$DOMPURIFY.tgz"
unpack diff "diff-$JSDIFF.tgz"
unpack dagre "dagrejs-dagre-$DAGRE.tgz"
rm -rf "$DEST" && mkdir -p "$DEST"/{marked,dompurify,diff,dagre}
cp "$tmp/marked/package/lib/marked.esm.js" "$tmp/marked/package/LICENSE" "$DEST/marked/"
# .mjs is served as .js: the console's asset server knows a fixed set of suffixes
cp "$tmp/dompurify/package/dist/purify.es.mjs" "$DEST/dompurify/purify.es.js"
cp "$tmp/dompurify/package/LICENSE" "$DEST/dompurify/"
(cd "$tmp/diff/package/libesm" && find . -name "*.js" -exec cp --parents {} "$OLDPWD/$DEST/diff/" \;)
cp "$tmp/diff/package/LICENSE" "$DEST/diff/"
cp "$tmp/dagre/package/dist/dagre.esm.js" "$tmp/dagre/package/dist/dagre.esm.js.LEGAL.txt" "$tmp/dagre/package/LICENSE" "$DEST/dagre/"
cat > "$DEST/VERSIONS" <<TXT
marked $MARKED
dompurify $DOMPURIFY
diff $JSDIFF
@dagrejs/dagre $DAGRE
TXT
echo "vendored into $DEST:"; cat "$DEST/VERSIONS"
