// The consent decision of functions/core/consent.py, computed from what the official IAB
// libraries decode: @iabtechlabtcf/core for TC strings, @iabgpp/cmpapi for GPP strings.
// The rule itself (which purposes, which restrictions, which GPP fields) is ours and is
// stated again here; every bit of every string is read by the libraries, never by us.
import { Base64Url, BitLength, IntEncoder, Segment, SegmentIDs, TCString, RestrictionType } from "@iabtechlabtcf/core";
import { GppModel, HeaderV1, Sections } from "@iabgpp/cmpapi";

const REQUIRED_PURPOSES = [1, 3, 4];
const FORBIDDING = [RestrictionType.NOT_ALLOWED, RestrictionType.REQUIRE_LI];
const OPT_OUT_FIELDS = ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"];
const TCF_EU_V2 = 2;
const US_PRIVACY = 6;
// US Privacy, usnat and every state section the library knows.
const US_SECTION_IDS = new Set(
  [...Sections.SECTION_ID_NAME_MAP].filter(([, name]) => name.startsWith("us")).map(([id]) => id),
);

// "grant" | "deny" | "invalid": the TCF rule on the model the library decodes.
export function tcfVerdict(tcString, vendorId, limits) {
  if (tcString.length > limits.maxTcString) return "invalid";
  let model;
  try {
    model = TCString.decode(tcString);
  } catch {
    return "invalid";
  }
  if (model.version !== 2) return "invalid"; // the library also reads v1; we do not
  // The library reads a string whose first segment is not the core one (it then has no
  // core at all), and a second core segment over the first; we do not.
  const kinds = tcString.split(".").map(segmentKind);
  if (kinds[0] !== Segment.CORE || kinds.slice(1).includes(Segment.CORE)) return "invalid";
  const restricted = model.publisherRestrictions
    .getRestrictions(vendorId)
    .some((r) => REQUIRED_PURPOSES.includes(r.purposeId) && FORBIDDING.includes(r.restrictionType));
  const grants =
    !model.purposeOneTreatment &&
    REQUIRED_PURPOSES.every((p) => model.purposeConsents.has(p)) &&
    model.vendorConsents.has(vendorId) &&
    !restricted;
  return grants ? "grant" : "deny";
}

// A segment's type, as TCString.decode works it out.
function segmentKind(segment) {
  const bits = Base64Url.decode(segment.charAt(0)).substr(0, BitLength.segmentType);
  return SegmentIDs.ID_TO_KEY[IntEncoder.decode(bits, BitLength.segmentType)];
}

// Applicable section ids of gpp_sid ("2,7" or "2_7"), null when absent; throws when malformed.
function parseGppSid(gppSid, limits) {
  if (gppSid === null || gppSid.trim() === "") return null;
  if (gppSid.length > limits.maxGppSid) throw new Error("gpp_sid too long");
  return new Set(
    gppSid.split(/[,_]/).map((item) => {
      if (!/^\s*[+-]?\d+\s*$/.test(item)) throw new Error("bad gpp_sid");
      return Number(item);
    }),
  );
}

// {sections: [[id, encoded]], model} as the library reads the GPP string; throws when malformed.
function readGpp(gpp, limits) {
  if (gpp.length > limits.maxGppString) throw new Error("too long");
  if (!gpp.startsWith("DB")) throw new Error("not a v1 header"); // the library reads "C..." as a bare TC string; we do not
  const parts = gpp.split("~");
  if (parts.length - 1 > limits.maxGppSections) throw new Error("too many sections");
  const model = new GppModel(gpp);
  model.getSectionIds(); // decodes the header, checks the section count and blank sections
  const ids = new HeaderV1(parts[0]).getFieldValue("SectionIds");
  return { model, sections: ids.map((id, i) => [id, parts[i + 1]]) };
}

// Does a US section (decoded by the library) record an opt-out? Throws when malformed.
function usOptedOut(model, sectionId) {
  const fields = model.getSection(Sections.SECTION_ID_NAME_MAP.get(sectionId));
  if (sectionId === US_PRIVACY) return !["N", "-"].includes(fields.OptOutSale);
  const optedOut = OPT_OUT_FIELDS.some((name) => name in fields && ![0, 2].includes(fields[name]));
  return optedOut || fields.Gpc === true;
}

// A TCF EU section must be well-formed for both libraries; then the TCF rule.
function gppTcfVerdict(model, encoded, vendorId, limits) {
  try {
    model.getSection("tcfeuv2");
  } catch {
    return "invalid";
  }
  return tcfVerdict(encoded, vendorId, limits);
}

// The reason consent_refusal must give (null: storing allowed), in its order of checks.
export function decide({ gdpr, tc_string, gpp, gpp_sid, vendor_id }, limits) {
  const gdprApplies = gdpr === "1";
  if (gdprApplies && tc_string) {
    const verdict = tcfVerdict(tc_string, vendor_id, limits);
    if (verdict === "invalid") return "gdpr_invalid_consent";
    if (verdict === "deny") return "gdpr_no_consent";
  }
  if (!gpp) return gdprApplies && !tc_string ? "gdpr_no_consent" : null;
  let read;
  try {
    read = readGpp(gpp, limits);
  } catch {
    return "gpp_invalid";
  }
  if (gdprApplies && !tc_string) {
    const section = read.sections.find(([id]) => id === TCF_EU_V2);
    if (!section) return "gdpr_no_consent";
    const verdict = gppTcfVerdict(read.model, section[1], vendor_id, limits);
    if (verdict === "invalid") return "gpp_invalid";
    if (verdict === "deny") return "gdpr_no_consent";
  }
  let applicable;
  try {
    const sids = parseGppSid(gpp_sid, limits);
    applicable = read.sections.filter(([id]) => sids === null || sids.has(id));
  } catch {
    return "gpp_invalid";
  }
  const verdicts = [];
  const optOuts = [];
  try {
    for (const [id, encoded] of applicable) {
      if (id === TCF_EU_V2) verdicts.push(gppTcfVerdict(read.model, encoded, vendor_id, limits));
      else if (US_SECTION_IDS.has(id)) optOuts.push(usOptedOut(read.model, id));
    }
  } catch {
    return "gpp_invalid";
  }
  if (verdicts.includes("invalid")) return "gpp_invalid";
  if (verdicts.includes("deny")) return "gdpr_no_consent";
  if (optOuts.includes(true)) return "gpp_optout";
  return null;
}
