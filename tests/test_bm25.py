from rag.bm25 import BM25, tokenize


def test_tokenize_english_and_chinese():
    toks = tokenize("Scope 1 emissions fell 12.5% in 2023; 温室气体排放")
    assert "emission" in toks and "12.5" in toks and "2023" in toks
    assert "the" not in tokenize("the emissions")
    # CJK becomes overlapping bigrams, so a word matches wherever it sits in a run.
    assert {"温室", "气体", "排放"} <= set(toks)


def test_bm25_ranks_by_term_weight_and_respects_allowed_rows():
    docs = [tokenize(t) for t in ["scope 1 emissions fell", "water withdrawal rose", "emissions emissions target"]]
    bm25 = BM25(docs)
    top = bm25.top(tokenize("emissions target"), 3)
    assert [i for i, _ in top] == [2, 0]
    assert bm25.top(tokenize("emissions"), 3, allowed=[1]) == []
    assert [i for i, _ in bm25.top(tokenize("emissions"), 3, allowed=[0])] == [0]


def test_bm25_chinese_query_scores_chinese_text():
    bm25 = BM25([tokenize("公司积极应对气候变化，温室气体排放下降"), tokenize("员工培训时长增加")])
    top = bm25.top(tokenize("温室气体排放情况如何？"), 2)
    assert top and top[0][0] == 0 and top[0][1] > 0
