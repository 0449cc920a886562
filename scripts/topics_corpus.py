#!/usr/bin/env python3
"""Generate the labelled topic corpus used to check /v1/topics against BERTopic.

Reproducible (fixed seed, standard library only): 8 known topics x 150
documents = 1,200 short documents. Each document mixes topic sentences built
from a per-topic vocabulary with neutral filler sentences, and one in eight
borrows a word from another topic, so the clustering is not trivial.

Usage: python3 scripts/topics_corpus.py [PER_TOPIC] > tests/fixtures/topics/corpus.jsonl
(PER_TOPIC defaults to 150; 1250 gives the 10,000-document job corpus of
scripts/topics_job.py.) Each line: {"text": ..., "label": "<topic name>"}.
"""
import json
import random
import sys

TOPICS = {
    "astronomy": dict(
        nouns="telescope galaxy nebula planet comet orbit asteroid star supernova moon eclipse "
        "observatory spectrum quasar satellite meteor constellation exoplanet pulsar cosmos".split(),
        verbs="observed tracked photographed measured orbited detected charted mapped".split(),
        adjs="distant bright faint stellar celestial lunar orbital cosmic".split(),
    ),
    "cooking": dict(
        nouns="recipe oven garlic onion sauce dough butter skillet pasta spice flour broth "
        "marinade kitchen chef dessert soup roast basil vinegar".split(),
        verbs="baked simmered chopped roasted seasoned stirred whisked grilled".split(),
        adjs="savory crispy tender spicy creamy fresh golden homemade".split(),
    ),
    "football": dict(
        nouns="goalkeeper striker referee penalty midfielder league stadium coach match "
        "tournament defender tackle corner offside season fans trophy pitch kickoff goal".split(),
        verbs="scored defended tackled passed dribbled coached refereed equalised".split(),
        adjs="decisive tactical aggressive home away injured unbeaten dramatic".split(),
    ),
    "medicine": dict(
        nouns="patient doctor diagnosis vaccine symptom infection surgery hospital therapy "
        "dose nurse clinic antibiotic prescription fever treatment blood pharmacy disease immunity".split(),
        verbs="diagnosed treated prescribed vaccinated examined operated monitored recovered".split(),
        adjs="chronic acute clinical medical viral severe surgical contagious".split(),
    ),
    "programming": dict(
        nouns="compiler function variable debugger repository algorithm database server "
        "syntax library framework thread memory pointer bug software loop interface runtime api".split(),
        verbs="compiled refactored debugged deployed committed parsed optimised tested".split(),
        adjs="recursive asynchronous concurrent legacy typed open-source scalable buggy".split(),
    ),
    "gardening": dict(
        nouns="soil seedling compost tomato rose shovel greenhouse hedge mulch fertilizer "
        "lawn orchard tulip pruning weeds harvest bulb watering vegetable flowerbed".split(),
        verbs="planted watered pruned harvested weeded dug mulched transplanted".split(),
        adjs="organic leafy blooming perennial shady fertile seasonal overgrown".split(),
    ),
    "music": dict(
        nouns="guitar melody orchestra concert drummer album chord piano rhythm singer "
        "symphony violin lyrics band tempo harmony rehearsal conductor jazz opera".split(),
        verbs="performed composed rehearsed recorded sang strummed conducted improvised".split(),
        adjs="acoustic melodic classical live harmonic upbeat orchestral rhythmic".split(),
    ),
    "finance": dict(
        nouns="investor stock bond dividend portfolio inflation bank interest loan market "
        "mortgage budget equity revenue shares currency broker tax savings hedge".split(),
        verbs="invested traded borrowed lent audited priced hedged refinanced".split(),
        adjs="fiscal quarterly volatile profitable bearish bullish monetary liquid".split(),
    ),
}

TEMPLATES = [
    "The {adj} {noun} was {verb} near the {noun2}.",
    "Yesterday we {verb} the {noun} and the {noun2}.",
    "Everyone talked about the {adj} {noun} after it was {verb}.",
    "A {adj} {noun} needs a good {noun2}.",
    "She {verb} a {noun} while thinking about the {adj} {noun2}.",
    "Why is the {noun} so {adj} compared with the {noun2}?",
    "My friend {verb} the {noun} with a {adj} {noun2}.",
    "Reports say the {noun2} {verb} another {adj} {noun}.",
]

FILLER = [
    "It was a long day.",
    "I will tell you more about it tomorrow.",
    "Many people find this interesting.",
    "Nobody expected that to happen.",
    "We discussed it over coffee.",
    "That is what I read in the newsletter.",
    "Honestly, it surprised me.",
    "Let me know what you think.",
]


def sentence(rng, vocab):
    return rng.choice(TEMPLATES).format(
        adj=rng.choice(vocab["adjs"]),
        noun=rng.choice(vocab["nouns"]),
        noun2=rng.choice(vocab["nouns"]),
        verb=rng.choice(vocab["verbs"]),
    )


def main(per_topic=150, seed=2026):
    rng = random.Random(seed)
    names = sorted(TOPICS)
    docs = []
    for name in names:
        vocab = TOPICS[name]
        for _ in range(per_topic):
            parts = [sentence(rng, vocab) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.5:
                parts.insert(rng.randint(0, len(parts)), rng.choice(FILLER))
            if rng.random() < 0.125:
                other = TOPICS[rng.choice([n for n in names if n != name])]
                parts.append(f"It reminded me of the {rng.choice(other['nouns'])}.")
            docs.append({"text": " ".join(parts), "label": name})
    rng.shuffle(docs)
    for d in docs:
        sys.stdout.write(json.dumps(d) + "\n")


if __name__ == "__main__":
    main(per_topic=int(sys.argv[1]) if len(sys.argv) > 1 else 150)
