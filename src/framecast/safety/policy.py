"""The prompt policy: a transparent, rule-based list of what framecast will not generate.

Every rule is a case-insensitive, whole-word pattern over the normalised prompt (lower case,
accents stripped, hyphens and underscores read as spaces). Some words refuse on their own;
others only next to a second kind of word (a violent verb only with a person or an animal
as its target, a suggestive word only with a minor), so that the world's ordinary prompts
("a ball hits a box", "a red ball is thrown to the right", "shoot a ball across") pass.
Categories, checked in this order (the first that matches decides):

- sexual_minors: any sexual or suggestive word together with a word for a child or a minor,
  and terms that mean it outright. Never generated, in any context.
- sexual: explicit sexual content and nudity.
- self_harm: suicide and self-injury.
- hate: hate symbols and groups, calls for violence against a group, slurs.
- violence: gore, and killing, torturing or injuring people or animals.
- weapons: making weapons, explosives or chemical and biological agents; attacks on crowds.
- real_person: the likeness of real people: a list of well-known public figures, and asking
  for a "real person", a "deepfake" or a "face swap". framecast does not depict real people.

A rule list is a floor, not a classifier: it is cheap, predictable and explainable, and it
misses paraphrases. A deployment that needs more puts a trained moderation model in front.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

log = logging.getLogger("framecast.safety")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    category: str | None = None  # one of CATEGORIES when refused
    reason: str = ""
    matched: str | None = None  # the words that triggered the rule


class PolicyViolation(ValueError):
    """A prompt the content policy refuses; carries the decision."""

    def __init__(self, decision: Decision):
        super().__init__(decision.reason)
        self.decision = decision


def _words(*groups: str, raw: tuple[str, ...] = ()) -> str:
    """Space-separated alternatives (_ is a space, a trailing * allows any word ending), and raw
    regular expressions -> one whole-word regex."""
    alts = list(raw)
    for group in groups:
        for w in group.split():
            w = re.escape(w.replace("_", " ")).replace(r"\ ", r"\s+")
            alts.append(w[:-2] + r"\w*" if w.endswith(r"\*") else w)
    return r"\b(?:" + "|".join(sorted(alts, key=len, reverse=True)) + r")\b"


MINORS = _words("child children childs kid kids kiddie minor minors underage under_age teen teens teenage* "
                "preteen* tween* toddler* infant* baby babies boy boys girl girls schoolgirl* schoolboy* "
                "juvenile* youngster* pubescent prepubescent young_child* little_girl* little_boy* "
                "loli lolita shota", raw=(r"(?:[0-9]|1[0-7])\s*(?:years?\s*old|yo|yrs?\s*old)",))
EXPLICIT = _words("sex sexual* sexually porn porno pornograph* xxx nsfw nude nudes nudity naked "
                  "topless bottomless genital* penis penises vagina* vulva clitoris testicle* "
                  "breasts boobs tits nipple* erotic* orgasm* masturbat* intercourse blowjob* handjob* "
                  "hentai stripper* striptease fetish* bdsm onlyfans camgirl* rape raped raping rapist* "
                  "molest* grope* groping incest cum cumshot* ejaculat* aroused arousal lewd obscene "
                  "sexting")
SUGGESTIVE = _words("sexy seductive* seduce* sensual* lingerie underwear bikini* undress* "
                    "flirt* provocative* spank*")
SEX_MINOR_TERMS = _words("lolicon shotacon pedo pedos pedophil* paedophil* pedobear child_abuse "
                         "csam cp_video* jailbait")
SELF_HARM = _words("suicidal self_harm* selfharm* self_injur* cutting_myself cut_myself cut_my_wrists "
                   "slit_my_wrists slit_his_wrists slit_her_wrists slit_their_wrists slits_her_wrists "
                   "slits_his_wrists kill_myself kills_himself kill_himself kills_herself kill_herself "
                   "kill_themselves killing_myself killing_himself killing_herself hang_myself hangs_himself "
                   "hang_himself hangs_herself hang_herself hanged_himself hanged_herself overdos* "
                   "pro_ana thinspo*", raw=(r"suicides?(?!\s*(?:vest|bomb|attack|mission))",))  # those: weapons
HATE = _words("nazi nazis neonazi* neo_nazi* swastika* heil_hitler sieg_heil kkk ku_klux* white_power "
              "white_supremac* ethnic_cleansing genocide* holocaust_denial antisemit* "
              "nigger* nigga* faggot* kike* spic spics wetback* tranny trannies "
              "raghead* gook gooks")
GROUPS = _words("jew jews jewish muslim* christian* hindu* sikh* buddhist* black_people blacks whites "
                "white_people asian* latino* latina* hispanic* arab arabs immigrant* refugee* gay gays "
                "lesbian* trans transgender* queer* disabled")
VIOLENT_VERBS = _words("kill kills killed killing murder* slaughter* massacre* behead* decapitat* dismember* "
                       "stab stabs stabbed stabbing strangl* tortur* execute executes "
                       "executed executing execution* lynch* burn_alive burned_alive burnt_alive "
                       "mutilat* maim* assault* beat_up beats_up beaten_up bludgeon* butcher* hanged "
                       "exterminat* gassed gassing eradicat*", raw=(r"(?<!photo\s)shoot(?:s|ing)?",))
LIVING = _words("person persons people man men woman women child children kid kids boy boys girl girls "
                "baby babies human humans someone somebody guy guys lady ladies crowd crowds victim* "
                "hostage* student* teacher* police* officer* soldier* civilian* family families "
                "dog dogs puppy puppies cat cats kitten* animal* horse* cow cows bird birds himself "
                "herself themselves him her them")
GORE = _words("gore gory blood_splatter* blood_spatter* bloodbath bloody_corpse* guts entrails "
              "disembowel* eviscerat* decapitat* dismember* mutilat* severed_head* severed_limb* "
              "corpse corpses dead_body dead_bodies cadaver* snuff torture_porn exploding_head* "
              "pool_of_blood covered_in_blood bloody", raw=(r"blood(?!\s*(?:red|orange))",))
WEAPONS = _words("bomb_making make_a_bomb making_a_bomb build_a_bomb building_a_bomb pipe_bomb* car_bomb* "
                 "nail_bomb* suicide_bomb* suicide_vest* dirty_bomb* molotov* napalm thermite_bomb* "
                 "ied ieds improvised_explosive* explosive_device* detonator* nerve_agent* nerve_gas sarin "
                 "vx_gas ricin anthrax bioweapon* biological_weapon* chemical_weapon* ghost_gun* "
                 "3d_printed_gun* 3d_printed_rifle* untraceable_gun* school_shoot* mass_shoot* "
                 "terror_attack* terrorist* jihad* isis al_qaeda")
REAL_PEOPLE = _words("biden joe_biden trump donald_trump obama barack_obama kamala_harris "
                     "putin vladimir_putin zelensky* xi_jinping kim_jong* modi narendra_modi macron "
                     "emmanuel_macron merkel angela_merkel rishi_sunak keir_starmer boris_johnson "
                     "netanyahu pope_francis pope_leo king_charles queen_elizabeth prince_harry "
                     "meghan_markle elon_musk jeff_bezos bezos mark_zuckerberg zuckerberg bill_gates "
                     "steve_jobs sam_altman taylor_swift beyonce rihanna kanye kanye_west kim_kardashian "
                     "oprah oprah_winfrey tom_cruise brad_pitt angelina_jolie scarlett_johansson "
                     "leonardo_dicaprio keanu_reeves dwayne_johnson morgan_freeman "
                     "emma_watson selena_gomez justin_bieber ariana_grande billie_eilish lady_gaga "
                     "cristiano_ronaldo lionel_messi messi lebron_james michael_jordan serena_williams "
                     "greta_thunberg hitler adolf_hitler stalin")
LIKENESS = _words("deepfake* deep_fake* real_person real_people real_human* actual_person likeness_of "
                  "famous_person famous_people president_of prime_minister_of lookalike* look_alike* "
                  "face_swap* faceswap*")

# (category, reason, rule): a rule is a pattern, or a pair that must both match somewhere
RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("sexual_minors", "sexual content involving minors", (SEX_MINOR_TERMS,)),
    ("sexual_minors", "sexual content involving minors", (EXPLICIT, MINORS)),
    ("sexual_minors", "sexual content involving minors", (SUGGESTIVE, MINORS)),
    ("sexual", "sexual content or nudity", (EXPLICIT,)),
    ("self_harm", "suicide or self-harm", (SELF_HARM,)),
    ("hate", "hateful content (hate symbols, slurs or violence against a group)", (HATE,)),
    ("hate", "hateful content (hate symbols, slurs or violence against a group)", (VIOLENT_VERBS, GROUPS)),
    ("violence", "graphic violence or gore", (GORE,)),
    ("violence", "violence against people or animals", (VIOLENT_VERBS, LIVING)),
    ("weapons", "weapons, explosives or attacks", (WEAPONS,)),
    ("real_person", "the likeness of a real person", (REAL_PEOPLE,)),
    ("real_person", "the likeness of a real person", (LIKENESS,)),
)
CATEGORIES = tuple(dict.fromkeys(c for c, _, _ in RULES))
_COMPILED = tuple((c, r, tuple(re.compile(p) for p in pats)) for c, r, pats in RULES)


def normalise(prompt: str) -> str:
    """Lower case, accents stripped, hyphens/underscores/dots as spaces: 'Self-Harm' reads 'self harm'."""
    text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode().lower()
    return re.sub(r"\s+", " ", re.sub(r"[-_./\\|]+", " ", text)).strip()


def check_prompt(prompt: str) -> Decision:
    """Allowed, or refused with the category and a reason a person can act on."""
    text = normalise(prompt)
    for category, what, patterns in _COMPILED:
        hits = [p.search(text) for p in patterns]
        if all(hits):
            matched = " + ".join(repr(h.group(0)) for h in hits)
            reason = (f"refused by the content policy ({category}): the prompt asks for {what} "
                      f"(matched {matched}), which framecast does not generate")
            return Decision(False, category, reason, matched)
    return Decision(True)


def enforce(prompt: str, where: str = "generate") -> None:
    """Raise PolicyViolation (and log the refusal) unless the policy allows the prompt."""
    decision = check_prompt(prompt)
    if not decision.allowed:
        log.warning("refused a prompt in %s: category=%s matched=%s", where, decision.category, decision.matched)
        raise PolicyViolation(decision)
