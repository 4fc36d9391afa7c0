// A deterministic corpus of consent strings, each with the decision the official IAB
// libraries lead to (decide.mjs), printed as JSON lines:
//   {"category", "gdpr", "tc_string", "gpp", "gpp_sid", "vendor_id", "expected"}
// `expected` is the reason consent_refusal must return (null: storing allowed).
//
//   node corpus.mjs --vendor 755 --max-tc-string 4096 --max-gpp-string 8192 \
//                   --max-gpp-sections 64 --max-gpp-sid 256 --max-range-entries 256 [--seed 20251129]
//
// TC strings come from the official encoder (a synthetic vendor list) and from a small bit
// writer below, which can also write what no encoder would (reversed ranges, vendor 0,
// restriction type 3, truncations). GPP sections come from @iabgpp/cmpapi's own classes.
import { GVL, TCModel, TCString, PurposeRestriction } from "@iabtechlabtcf/core";
import * as gppLib from "@iabgpp/cmpapi";
import { decide } from "./decide.mjs";

const options = parseArguments(process.argv.slice(2));
const VENDOR = options.vendor;
const limits = {
  maxTcString: options["max-tc-string"],
  maxGppString: options["max-gpp-string"],
  maxGppSections: options["max-gpp-sections"],
  maxGppSid: options["max-gpp-sid"],
  maxRangeEntries: options["max-range-entries"],
};
const random = mulberry32(options.seed ?? 20251129);
const cases = [];

function parseArguments(argv) {
  const parsed = {};
  for (let i = 0; i < argv.length; i += 2) parsed[argv[i].replace(/^--/, "")] = Number(argv[i + 1]);
  for (const name of ["vendor", "max-tc-string", "max-gpp-string", "max-gpp-sections", "max-gpp-sid", "max-range-entries"]) {
    if (!Number.isInteger(parsed[name])) throw new Error(`--${name} is required`);
  }
  return parsed;
}

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const chance = (p) => random() < p;
const integer = (low, high) => low + Math.floor(random() * (high - low + 1));
const pick = (items) => items[Math.floor(random() * items.length)];
const subset = (items, p) => items.filter(() => chance(p));

function add(category, { gdpr = "1", tc_string = null, gpp = null, gpp_sid = null, vendor_id = VENDOR }) {
  const input = { gdpr, tc_string, gpp, gpp_sid, vendor_id };
  cases.push({ category, ...input, expected: decide(input, limits) });
}

// --- TC strings written bit by bit ("TC string format", TCF v2.x) ------------------

const DICT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

class Bits {
  constructor() {
    this.text = "";
  }
  int(value, width) {
    if (value < 0 || value >= 2 ** width) throw new Error(`${value} does not fit in ${width} bits`);
    this.text += value.toString(2).padStart(width, "0");
    return this;
  }
  flags(on, width) {
    for (let n = 1; n <= width; n++) this.text += on.includes(n) ? "1" : "0";
    return this;
  }
  base64url() {
    const padded = this.text + "0".repeat((24 - (this.text.length % 24)) % 24);
    let out = "";
    for (let i = 0; i < padded.length; i += 6) out += DICT[parseInt(padded.slice(i, i + 6), 2)];
    return out;
  }
}

// A vendor section: {ids, maxId} as a bitfield, or {ranges: [id | [start, end]], maxId}.
function vendorSection(bits, section) {
  if (section.ranges) {
    const ends = section.ranges.map((entry) => (Array.isArray(entry) ? entry[1] : entry));
    bits.int(section.maxId ?? Math.max(0, ...ends), 16).int(1, 1);
    rangeEntries(bits, section.ranges);
  } else {
    const maxId = section.maxId ?? Math.max(0, ...section.ids);
    bits.int(maxId, 16).int(0, 1);
    const on = new Set(section.ids);
    for (let id = 1; id <= maxId; id++) bits.text += on.has(id) ? "1" : "0";
  }
}

function rangeEntries(bits, entries) {
  bits.int(entries.length, 12);
  for (const entry of entries) {
    if (Array.isArray(entry)) bits.int(1, 1).int(entry[0], 16).int(entry[1], 16);
    else bits.int(0, 1).int(entry, 16);
  }
}

const CORE_DEFAULTS = {
  version: 2,
  cmpId: 300,
  cmpVersion: 5,
  language: [4, 13], // "EN"
  purposes: [1, 3, 4],
  purposesLI: [2, 7],
  purposeOneTreatment: 0,
  country: [3, 4], // "DE"
  consents: { ids: [VENDOR] },
  legitimateInterests: { ids: [] },
  restrictions: [], // {purpose, type, entries}
  segments: [],
};

function craftTc(overrides = {}) {
  const f = { ...CORE_DEFAULTS, ...overrides };
  const bits = new Bits()
    .int(f.version, 6)
    .int(17_170_000_000, 36)
    .int(17_172_000_000, 36)
    .int(f.cmpId, 12)
    .int(f.cmpVersion, 12)
    .int(2, 6)
    .int(f.language[0], 6)
    .int(f.language[1], 6)
    .int(300, 12)
    .int(4, 6)
    .int(1, 1)
    .int(0, 1)
    .flags([1], 12)
    .flags(f.purposes, 24)
    .flags(f.purposesLI, 24)
    .int(f.purposeOneTreatment, 1)
    .int(f.country[0], 6)
    .int(f.country[1], 6);
  vendorSection(bits, f.consents);
  vendorSection(bits, f.legitimateInterests);
  bits.int(f.restrictions.length, 12);
  for (const restriction of f.restrictions) {
    bits.int(restriction.purpose, 6).int(restriction.type, 2);
    rangeEntries(bits, restriction.entries);
  }
  return [bits.base64url(), ...f.segments].join(".");
}

// Segments after the core one: 1 disclosed vendors, 2 allowed vendors, 3 publisher purposes.
function vendorsSegment(type, section) {
  const bits = new Bits().int(type, 3);
  vendorSection(bits, section);
  return bits.base64url();
}
function publisherSegment(custom = 0) {
  const bits = new Bits().int(3, 3).flags([1, 3], 24).flags([2], 24).int(custom, 6);
  bits.flags([1], custom).flags([], custom);
  return bits.base64url();
}

// --- TC strings from the official encoder -------------------------------------------

const GVL_VENDOR_IDS = [...new Set([1, 2, 3, 8, 10, 25, 91, 500, 754, VENDOR, 756, 800, 1000, 1200])].sort(
  (a, b) => a - b,
);
const gvl = (() => {
  const numbered = (n, make) => Object.fromEntries(Array.from({ length: n }, (_, i) => [i + 1, make(i + 1)]));
  const item = (id) => ({ id, name: `item ${id}`, description: "", illustrations: [] });
  const vendors = Object.fromEntries(
    GVL_VENDOR_IDS.map((id) => [
      id,
      {
        id,
        name: `vendor ${id}`,
        purposes: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        legIntPurposes: [2, 7, 8, 9, 10, 11],
        flexiblePurposes: [2, 3, 4, 7, 10],
        specialPurposes: [1],
        features: [],
        specialFeatures: [],
        policyUrl: "",
      },
    ]),
  );
  return new GVL({
    gvlSpecificationVersion: 3,
    vendorListVersion: 300,
    tcfPolicyVersion: 4,
    lastUpdated: "2025-01-01T00:00:00Z",
    purposes: numbered(11, item),
    specialPurposes: numbered(2, item),
    features: numbered(3, item),
    specialFeatures: numbered(2, item),
    stacks: {},
    dataCategories: {},
    vendors,
  });
})();

function officialTc({ purposes, consents, legitimateInterests, restrictions, purposeOneTreatment, serviceSpecific }) {
  const model = new TCModel(gvl);
  model.cmpId = 300;
  model.cmpVersion = 5;
  model.publisherCountryCode = "DE";
  model.isServiceSpecific = serviceSpecific;
  model.purposeOneTreatment = purposeOneTreatment;
  model.created = new Date(Date.UTC(2025, 0, 2));
  model.lastUpdated = new Date(Date.UTC(2025, 0, 3));
  if (purposes.length) model.purposeConsents.set(purposes);
  if (consents.length) model.vendorConsents.set(consents);
  if (legitimateInterests.length) model.vendorLegitimateInterests.set(legitimateInterests);
  for (const [vendor, purpose, type] of restrictions) {
    model.publisherRestrictions.add(vendor, new PurposeRestriction(purpose, type));
  }
  return TCString.encode(model, { isForVendors: chance(0.5) });
}

// --- TCF cases ----------------------------------------------------------------------

function tcfCases() {
  const purposeSets = [
    [1, 3, 4],
    [1, 2, 3, 4, 7, 9, 10],
    [3, 4],
    [1, 4],
    [1, 3],
    [2, 7],
    [],
  ];
  for (let i = 0; i < 80; i++) {
    const restrictions = [];
    for (let r = integer(0, 3); r > 0; r--) {
      restrictions.push([pick([VENDOR, VENDOR, 1, 1000]), pick([1, 2, 3, 4, 7, 10]), integer(0, 2)]);
    }
    add("tcf_official_encoder", {
      tc_string: officialTc({
        purposes: chance(0.6) ? [1, 3, 4, ...subset([2, 5, 6, 7, 8, 9, 10], 0.5)] : pick(purposeSets),
        consents: subset(GVL_VENDOR_IDS, chance(0.5) ? 0.9 : 0.3),
        legitimateInterests: subset(GVL_VENDOR_IDS, 0.4),
        restrictions,
        purposeOneTreatment: chance(0.1),
        serviceSpecific: chance(0.8),
      }),
    });
  }

  // Purposes: each required one missing, or given as legitimate interest only.
  add("tcf_purposes", { tc_string: craftTc() });
  add("tcf_purposes", { tc_string: craftTc({ purposes: Array.from({ length: 24 }, (_, i) => i + 1) }) });
  for (const missing of [1, 3, 4]) {
    const purposes = [1, 2, 3, 4, 7].filter((p) => p !== missing);
    add("tcf_purposes", { tc_string: craftTc({ purposes }) });
    add("tcf_purposes", { tc_string: craftTc({ purposes, purposesLI: [missing, 2, 7] }) });
  }
  add("tcf_purposes", { tc_string: craftTc({ purposes: [], purposesLI: [1, 3, 4] }) });
  add("tcf_purpose_one_treatment", { tc_string: craftTc({ purposeOneTreatment: 1 }) });
  add("tcf_purpose_one_treatment", { tc_string: craftTc({ purposeOneTreatment: 1, purposes: [3, 4] }) });

  // Vendor consents as a bitfield.
  const bitfields = [
    { ids: [VENDOR] },
    { ids: [VENDOR - 1, VENDOR + 1] },
    { ids: [VENDOR], maxId: VENDOR },
    { ids: [VENDOR - 1], maxId: VENDOR - 1 },
    { ids: [1, 2, 3, VENDOR, 1200], maxId: 1300 },
    { ids: [], maxId: 0 },
    { ids: [], maxId: 2000 },
    { ids: Array.from({ length: 400 }, (_, i) => 2 * i + 1), maxId: 1400 },
  ];
  for (const consents of bitfields) add("tcf_vendor_bitfield", { tc_string: craftTc({ consents }) });
  add("tcf_vendor_legitimate_interest_only", {
    tc_string: craftTc({ consents: { ids: [1] }, legitimateInterests: { ids: [VENDOR] } }),
  });
  add("tcf_vendor_legitimate_interest_only", {
    tc_string: craftTc({ consents: { ranges: [] }, legitimateInterests: { ranges: [[1, 65535]] } }),
  });

  // Vendor consents as ranges.
  const ranges = [
    [VENDOR],
    [[VENDOR, VENDOR]],
    [[VENDOR - 10, VENDOR]],
    [[VENDOR, VENDOR + 10]],
    [[1, VENDOR - 1], [VENDOR + 1, 65535]],
    [VENDOR - 1, VENDOR + 1],
    [[1, 65535]],
    [],
    [[VENDOR + 5, VENDOR - 5]], // ends before it starts: no vendor
    [[VENDOR + 5, VENDOR - 5], VENDOR],
    [0], // vendor 0: the library refuses the string
    [[0, VENDOR]],
    // As many as our decoder accepts (MAX_RANGE_ENTRIES; more are refused by our rule, see
    // functions/core/tcf.py, and tested in tests/unit/test_tcf.py).
    Array.from({ length: limits.maxRangeEntries }, (_, i) => [i * 200 + 1, i * 200 + 100]),
  ];
  for (const entries of ranges) add("tcf_vendor_ranges", { tc_string: craftTc({ consents: { ranges: entries } }) });
  // MaxVendorId below a range: the library still reads the range.
  add("tcf_vendor_ranges", { tc_string: craftTc({ consents: { ranges: [[VENDOR, VENDOR + 1]], maxId: 10 } }) });
  add("tcf_vendor_ranges", {
    tc_string: craftTc({ consents: { ranges: [VENDOR] }, legitimateInterests: { ranges: [[0, 3]] } }),
  });

  // Publisher restrictions: every purpose of interest, every type, naming us or not.
  for (const purpose of [1, 2, 3, 4, 7, 10, 24]) {
    for (const type of [0, 1, 2]) {
      for (const entries of [[VENDOR], [[VENDOR - 3, VENDOR + 3]], [[1, VENDOR - 1]], [VENDOR + 1]]) {
        add("tcf_publisher_restrictions", { tc_string: craftTc({ restrictions: [{ purpose, type, entries }] }) });
      }
    }
  }
  const restrictionSets = [
    [{ purpose: 0, type: 0, entries: [VENDOR] }], // purpose 0 with entries: refused by the library
    [{ purpose: 0, type: 0, entries: [] }],
    [{ purpose: 1, type: 3, entries: [12] }], // type 3: refused by the library
    [{ purpose: 1, type: 3, entries: [] }],
    [{ purpose: 3, type: 0, entries: [[VENDOR + 10, VENDOR]] }], // reversed range: refused
    [{ purpose: 2, type: 0, entries: [[50, 40]] }],
    [{ purpose: 3, type: 1, entries: [0] }], // vendor 0 may be named
    [
      { purpose: 1, type: 1, entries: [VENDOR] },
      { purpose: 3, type: 1, entries: [[1, 65535]] },
      { purpose: 4, type: 2, entries: [VENDOR + 1] },
    ],
    [
      { purpose: 7, type: 0, entries: [[1, 65535]] },
      { purpose: 4, type: 2, entries: [1, 2, [VENDOR, VENDOR]] },
    ],
    [{ purpose: 63, type: 2, entries: [VENDOR] }],
  ];
  for (const restrictions of restrictionSets) {
    add("tcf_publisher_restrictions", { tc_string: craftTc({ restrictions }) });
  }

  // Other vendor ids, from 1 to the largest 16 bits can hold.
  for (const vendor of [1, 2, 1000, 4000, 20000, 40000, 65535]) {
    add("tcf_vendor_ids", { vendor_id: vendor, tc_string: craftTc({ consents: { ids: [vendor] } }) });
    add("tcf_vendor_ids", { vendor_id: vendor, tc_string: craftTc({ consents: { ranges: [[vendor, 65535]] } }) });
    add("tcf_vendor_ids", { vendor_id: vendor, tc_string: craftTc({ consents: { ranges: [vendor - 1] } }) });
    add("tcf_vendor_ids", {
      vendor_id: vendor,
      tc_string: craftTc({ consents: { ranges: [[1, 65535]] }, restrictions: [{ purpose: 4, type: 0, entries: [vendor] }] }),
    });
  }

  // Segments after the core one, well-formed and not.
  const segmentSets = [
    [vendorsSegment(1, { ids: [1, 2, VENDOR] })],
    [vendorsSegment(2, { ranges: [[1, 65535]] })],
    [publisherSegment()],
    [publisherSegment(5)],
    [vendorsSegment(1, { ids: [VENDOR] }), publisherSegment(2), vendorsSegment(2, { ids: [] })],
    [vendorsSegment(1, { ranges: [0] })],
    [vendorsSegment(1, { ranges: [[9, 3]] })],
    [publisherSegment(5).slice(0, 8)],
    [vendorsSegment(1, { ids: [1200] }).slice(0, 4)],
    [""],
    ["g"],
    ["gAAA"],
    ["_AAA"],
    ["YA%A"],
  ];
  const coreOnly = craftTc();
  segmentSets.push([coreOnly]); // a second core segment
  add("tcf_segments", { tc_string: [publisherSegment(), coreOnly].join(".") }); // core not first
  add("tcf_segments", { tc_string: publisherSegment() });
  for (const segments of segmentSets) add("tcf_segments", { tc_string: craftTc({ segments }) });

  // Malformed: truncated anywhere, not base64url, wrong version, fields the library refuses.
  const long = craftTc({
    consents: { ranges: [[1, 100], VENDOR, [2000, 3000]] },
    legitimateInterests: { ids: [3, 5, 8] },
    restrictions: [{ purpose: 2, type: 1, entries: [[1, 400]] }],
    segments: [vendorsSegment(1, { ids: [1, VENDOR] })],
  });
  for (let cut = 1; cut < long.length; cut += integer(1, 4)) {
    add("tcf_truncated", { tc_string: long.slice(0, cut) });
  }
  const core = long.split(".")[0];
  for (const bad of ["!", "=", "+", "/", " ", "é", "\u0000", "%2F"]) {
    add("tcf_not_base64url", { tc_string: core.slice(0, 20) + bad + core.slice(20) });
  }
  add("tcf_not_base64url", { tc_string: core + "==" });
  for (const version of [0, 1, 3, 7, 63]) add("tcf_version", { tc_string: craftTc({ version }) });
  for (const cmpId of [0, 1, 2, 4095]) add("tcf_header_fields", { tc_string: craftTc({ cmpId }) });
  for (const letters of [[25, 25], [26, 0], [31, 31], [57, 3], [58, 3], [3, 63], [0, 0]]) {
    add("tcf_header_fields", { tc_string: craftTc({ country: letters }) });
    add("tcf_header_fields", { tc_string: craftTc({ language: letters }) });
  }
  for (const garbage of ["", "C", "CP", "not a tc string", "....", "CPzHq4APzHq4A", ".CPzHq4APzHq4AAcABBENAzCgAP_AAH_AAAqIHNtf"]) {
    add("tcf_garbage", { tc_string: garbage });
  }
  // Longer than MAX_TC_STRING, granting otherwise.
  const padded = craftTc({ consents: { ids: [VENDOR], maxId: 6 * limits.maxTcString } });
  add("tcf_too_long", { tc_string: padded });

  // Random strings, and random changes to well-formed ones.
  const written = [];
  for (let i = 0; i < 150; i++) {
    const tc = craftTc(randomCore());
    written.push(tc);
    add("tcf_random", { tc_string: tc });
  }
  for (let i = 0; i < 120; i++) {
    const tc = pick(written);
    const at = integer(0, tc.length - 1);
    const mutated = chance(0.5)
      ? tc.slice(0, at) + pick(DICT.split("")) + tc.slice(at + 1)
      : tc.slice(0, at) + tc.slice(at + integer(1, 3));
    add("tcf_mutated", { tc_string: mutated });
  }

  // gdpr other than "1": the TC string is not read.
  add("gdpr_flag", { gdpr: "0", tc_string: "garbage" });
  add("gdpr_flag", { gdpr: null, tc_string: craftTc({ purposes: [] }) });
  add("gdpr_flag", { gdpr: "1", tc_string: null });
  add("gdpr_flag", { gdpr: "1", tc_string: "" });
  add("gdpr_flag", { gdpr: "true", tc_string: null });
}

function randomVendorSection() {
  const near = () => VENDOR + integer(-3, 3);
  if (chance(0.5)) {
    const ids = subset([1, 2, 100, near(), near(), VENDOR, 1500], 0.5);
    return { ids, maxId: chance(0.2) ? integer(0, 2000) : undefined };
  }
  const entries = [];
  for (let n = integer(0, 5); n > 0; n--) {
    const start = chance(0.5) ? near() : integer(1, 3000);
    entries.push(chance(0.5) ? start : [start, start + integer(chance(0.1) ? -2 : 0, 50)]);
  }
  return { ranges: entries };
}

function randomCore() {
  const restrictions = [];
  for (let n = integer(0, 3); n > 0; n--) {
    const entries = [];
    for (let e = integer(0, 3); e > 0; e--) {
      const start = chance(0.5) ? VENDOR + integer(-2, 2) : integer(1, 2000);
      entries.push(chance(0.5) ? start : [start, start + integer(0, 20)]);
    }
    restrictions.push({ purpose: pick([1, 2, 3, 4, 5, 7, 10]), type: integer(0, 2), entries });
  }
  return {
    purposes: chance(0.6) ? [1, 3, 4, ...subset([2, 5, 7, 9], 0.5)] : subset([1, 2, 3, 4, 5, 7, 9], 0.6),
    purposesLI: subset([1, 2, 3, 4, 7, 9, 10], 0.4),
    purposeOneTreatment: chance(0.1) ? 1 : 0,
    consents: randomVendorSection(),
    legitimateInterests: randomVendorSection(),
    restrictions,
    segments: chance(0.3) ? [vendorsSegment(1, randomVendorSection())] : [],
  };
}

// --- GPP cases ----------------------------------------------------------------------

const compressed = gppLib.CompressedBase64UrlEncoder.getInstance();
const NAME_OF = gppLib.Sections.SECTION_ID_NAME_MAP;
const CLASS_OF = new Map(
  [...NAME_OF].map(([id, name]) => [id, Object.values(gppLib).find((c) => c?.NAME === name && c?.ID === id)]),
);
const US_IDS = [...NAME_OF].filter(([, name]) => name.startsWith("us") && name !== "uspv1").map(([id]) => id);
const OPT_OUT_FIELDS = ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"];

function header(ids) {
  const h = new gppLib.HeaderV1();
  h.setFieldValue("SectionIds", ids);
  return h.encode();
}
// A GPP string of [id, encoded section] pairs (the header lists ids in increasing order).
function gppString(sections) {
  const sorted = [...sections].sort((a, b) => a[0] - b[0]);
  return [header(sorted.map(([id]) => id)), ...sorted.map(([, encoded]) => encoded)].join("~");
}

// A US section with `values` set, e.g. {SaleOptOut: 1, Gpc: true, GpcSegmentIncluded: true}.
function usSection(id, values = {}) {
  const section = new (CLASS_OF.get(id))();
  for (const [field, value] of Object.entries(values)) section.setFieldValue(field, value);
  return section.encode();
}
function usFields(id) {
  const section = new (CLASS_OF.get(id))();
  return section.segments[0].getFieldNames();
}
// Sets a 2-bit core field to 3, a value the library reads but no encoder writes.
function withThree(id, encoded, field) {
  const segment = new (CLASS_OF.get(id))().segments[0];
  let offset = 0;
  for (const name of segment.getFieldNames()) {
    if (name === field) break;
    const f = segment.fields.get(name);
    offset += f.bitStringLength ?? f.elementBitStringLength * f.numElements;
  }
  const [core, ...rest] = encoded.split(".");
  const bits = compressed.decode(core);
  return [compressed.encode(bits.slice(0, offset) + "11" + bits.slice(offset + 2)), ...rest].join(".");
}
function randomUsValues(id) {
  const values = {};
  for (const field of usFields(id)) {
    if (OPT_OUT_FIELDS.includes(field)) values[field] = pick([0, 2, 2, 2, 1]);
  }
  const gpcCapable = new (CLASS_OF.get(id))().hasField("Gpc");
  if (gpcCapable) {
    values.GpcSegmentIncluded = chance(0.7);
    values.Gpc = values.GpcSegmentIncluded && chance(0.2);
  }
  return values;
}
function randomUsSection(id) {
  if (id === 6) return usPrivacy(pick(["N", "N", "-", "Y"]));
  return usSection(id, randomUsValues(id));
}
function usPrivacy(optOutSale) {
  const section = new gppLib.UspV1();
  section.setFieldValue("Notice", "Y");
  section.setFieldValue("OptOutSale", optOutSale);
  section.setFieldValue("LspaCovered", "N");
  return section.encode();
}

function gppCases(tcStrings) {
  // Every US section, every opt-out field it has, every value.
  for (const id of US_IDS) {
    const fields = usFields(id).filter((f) => OPT_OUT_FIELDS.includes(f));
    for (const field of fields) {
      for (const value of [0, 1, 2]) {
        const values = Object.fromEntries(fields.map((f) => [f, 2]));
        values[field] = value;
        add(`gpp_${NAME_OF.get(id)}`, { gdpr: null, gpp: gppString([[id, usSection(id, values)]]) });
      }
      const clean = usSection(id, Object.fromEntries(fields.map((f) => [f, 2])));
      add(`gpp_${NAME_OF.get(id)}`, { gdpr: null, gpp: gppString([[id, withThree(id, clean, field)]]) });
    }
    const none = Object.fromEntries(fields.map((f) => [f, 0]));
    if (new (CLASS_OF.get(id))().hasField("Gpc")) {
      for (const [included, gpc] of [[false, false], [true, false], [true, true]]) {
        const values = { ...none, GpcSegmentIncluded: included, Gpc: gpc };
        add(`gpp_${NAME_OF.get(id)}`, { gdpr: null, gpp: gppString([[id, usSection(id, values)]]) });
      }
    } else {
      add(`gpp_${NAME_OF.get(id)}`, { gdpr: null, gpp: gppString([[id, usSection(id, none)]]) });
    }
  }
  for (const optOutSale of ["Y", "N", "-"]) {
    add("gpp_uspv1", { gdpr: null, gpp: gppString([[6, usPrivacy(optOutSale)]]) });
  }
  for (const raw of ["1YNN", "1NNY", "1---", "1NYN.x", "1NNN", "1N?N", "1NN", "1NNNN"]) {
    add("gpp_uspv1", { gdpr: null, gpp: gppString([[6, raw]]) });
  }
  // usnat of version 1, a shorter layout the library still reads.
  for (const sale of [1, 2]) {
    const legacy = usSection(7, { Version: 1, SaleOptOut: sale, GpcSegmentIncluded: false });
    add("gpp_usnat_version_1", { gdpr: null, gpp: gppString([[7, legacy]]) });
    add("gpp_usnat_version_1", { gdpr: null, gpp: gppString([[7, legacy.slice(0, 10)]]) });
  }

  // The TCF EU section: with gdpr=1 and no gdpr_consent it stands in for it.
  const granting = craftTc();
  const denying = craftTc({ purposes: [1, 3] });
  const broken = granting.slice(0, 30);
  for (const tc of [granting, denying, broken]) {
    const alone = gppString([[2, tc]]);
    add("gpp_tcf_eu", { gdpr: "1", gpp: alone });
    add("gpp_tcf_eu", { gdpr: null, gpp: alone });
    add("gpp_tcf_eu", { gdpr: "1", tc_string: granting, gpp: alone });
    add("gpp_tcf_eu", { gdpr: "1", tc_string: denying, gpp: alone });
    add("gpp_tcf_eu", { gdpr: "1", gpp: alone, gpp_sid: "7" });
    add("gpp_tcf_eu", { gdpr: null, gpp: gppString([[2, tc], [7, usSection(7)]]), gpp_sid: "7" });
    add("gpp_tcf_eu", { gdpr: "0", gpp: gppString([[2, tc], [8, usSection(8)]]), gpp_sid: "2_8" });
  }
  add("gpp_tcf_eu", { gdpr: "1", gpp: gppString([[7, usSection(7)]]) });
  for (const tc of tcStrings.slice(0, 40)) add("gpp_tcf_eu", { gdpr: null, gpp: gppString([[2, tc]]) });

  // Several sections, with and without gpp_sid.
  const allIds = [2, 6, ...US_IDS];
  for (let i = 0; i < 150; i++) {
    const ids = subset(allIds, 0.15);
    if (ids.length === 0) ids.push(pick(allIds));
    const sections = ids.map((id) => [id, id === 2 ? pick(tcStrings) : randomUsSection(id)]);
    const sid = pick([
      null,
      ids.join(","),
      ids.join("_"),
      subset(ids, 0.5).join(","),
      "-1",
      String(pick(allIds)),
      `${pick(ids)},99`,
      "",
    ]);
    add("gpp_several_sections", { gdpr: pick([null, null, "0", "1"]), gpp: gppString(sections), gpp_sid: sid });
  }
  for (const sid of ["x", "2,,7", "2;7", "7,", "7 8", "0x7", "7" + ",1".repeat(200)]) {
    add("gpp_sid_malformed", { gdpr: null, gpp: gppString([[7, usSection(7)]]), gpp_sid: sid });
  }

  // Sections that are not read: Canada's TCF, ids not registered.
  add("gpp_unread_sections", { gdpr: null, gpp: gppString([[5, "not even base64!"], [7, usSection(7)]]) });
  add("gpp_unread_sections", { gdpr: null, gpp: gppString([[1, "x"], [3, "y"], [4, "z"], [28, "%%"], [40, "."]]) });
  add("gpp_unread_sections", {
    gdpr: null,
    gpp: gppString([[8, usSection(8, { SaleOptOut: 1 })], [50, "junk"]]),
    gpp_sid: "50",
  });

  // Malformed GPP strings.
  const usnat = usSection(7);
  const [usnatCore] = usnat.split(".");
  const malformed = [
    "DBAA", // no sections: well-formed
    "DB",
    "DBA",
    "DBABLA",
    `DBABLA~${usnat}~${usnat}`,
    `DBABLA~`,
    `DBABLA~ `,
    `DBACNY~${usnat}`,
    `CBABLA~${usnat}`,
    `DAABLA~${usnat}`,
    `${granting}`,
    `DBABLA~${usnatCore}.`,
    `DBABLA~${usnatCore}.Q%`,
    `DBABLA~${usnatCore.slice(0, 9)}`,
    `DBABLA~${usnatCore.slice(0, 10)}.QA`,
    `DBABLA~${usnatCore}!`,
    `DBABLA.xyz~${usnat}`,
    `DBABL~${usnat}`,
    gppString([[25, usSection(25).split(".")[0] + ".AA"]]),
    gppString([[25, usSection(25).split(".")[0] + ".AAA"]]),
    gppString([[9, usSection(9).slice(0, 4)]]),
    gppString([[9, usSection(9) + ".%%%"]]),
    gppString([[2, granting + "."]]),
    gppString([[2, "g" + granting.slice(1)]]),
    gppString([[7, usnat], [8, usSection(8).slice(0, 5)]]),
    gppString(Array.from({ length: limits.maxGppSections + 1 }, (_, i) => [i + 28, "x"])),
    gppString(Array.from({ length: limits.maxGppSections }, (_, i) => [i + 28, "x"])),
    gppString([[7, usnat], [28, "x".repeat(limits.maxGppString)]]),
  ];
  // A header whose only Fibonacci integer is never terminated.
  malformed.push(new Bits().int(3, 6).int(1, 6).int(1, 12).int(0, 1).int(0, 12).base64url() + "~" + usnat);
  for (const gpp of malformed) add("gpp_malformed", { gdpr: null, gpp });
  add("gpp_malformed", { gdpr: null, gpp: gppString([[2, granting + ".gAAA"], [7, usnat]]), gpp_sid: "7" });
  add("gpp_malformed", { gdpr: null, gpp: gppString([[5, "CAAA.QAAA"], [7, usnat]]), gpp_sid: "7" });
  add("gpp_malformed", { gdpr: null, gpp: gppString([[2, granting + ".QAAA"], [7, usnat]]), gpp_sid: "7" });

  // Random changes to well-formed strings: a character replaced, or a few dropped.
  const pool = cases.filter((c) => c.category === "gpp_several_sections").map((c) => c.gpp);
  for (let i = 0; i < 150; i++) {
    const gpp = chance(0.3) ? gppString([[pick(US_IDS), randomUsSection(pick(US_IDS))]]) : pick(pool);
    const at = integer(0, gpp.length - 1);
    const mutated = chance(0.7)
      ? gpp.slice(0, at) + pick(DICT.split("").concat(["~", "."])) + gpp.slice(at + 1)
      : gpp.slice(0, at) + gpp.slice(at + integer(1, 3));
    add("gpp_mutated", { gdpr: pick([null, "1"]), gpp: mutated, gpp_sid: pick([null, null, "7", "2,6,8"]) });
  }
}

tcfCases();
const wellFormed = cases.filter((c) => c.category === "tcf_random" && c.expected !== "gdpr_invalid_consent");
gppCases(wellFormed.map((c) => c.tc_string));
for (const c of cases) process.stdout.write(JSON.stringify(c) + "\n");
