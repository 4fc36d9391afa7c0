// The field layout of every US section @iabgpp/cmpapi encodes, as JSON:
//   {"<id>": {"name", "fields": [[field, bits], ...], "second": "GPC" | "SENSITIVE_DATA" | "NONE",
//             "second_bits": n}}
// tests/reference/test_consent_matches_iab.py compares it with functions/core/gpp.py.
import * as gppLib from "@iabgpp/cmpapi";

const bitsOf = (field) =>
  field.bitStringLength ?? (field.elementBitStringLength ? field.elementBitStringLength * field.numElements : 1);

const layouts = {};
for (const [id, name] of gppLib.Sections.SECTION_ID_NAME_MAP) {
  if (!name.startsWith("us") || name === "uspv1") continue;
  const Section = Object.values(gppLib).find((c) => c?.NAME === name && c?.ID === id);
  const [core, second] = new Section().segments;
  const layout = { name, fields: core.getFieldNames().map((f) => [f, bitsOf(core.fields.get(f))]) };
  if (!second) {
    layout.second = "NONE";
    layout.second_bits = 0;
  } else {
    const names = second.getFieldNames();
    layout.second = names.includes("Gpc") ? "GPC" : names.includes("SensitiveDataProcessing") ? "SENSITIVE_DATA" : "?";
    layout.second_bits = names.reduce((sum, f) => sum + bitsOf(second.fields.get(f)), 0);
  }
  layouts[id] = layout;
}
process.stdout.write(JSON.stringify(layouts) + "\n");
