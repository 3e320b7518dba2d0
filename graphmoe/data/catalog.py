"""The dataset table: one :class:`DatasetInfo` per registered dataset.

This is the only place that knows dataset-specific facts (folder, file names,
metric, split protocol). Loaders in :mod:`graphmoe.data.formats` are per *format*.
Folder names follow the default data root layout (``datasets/README.md``).
"""
from __future__ import annotations

from urllib.parse import quote

from .info import DatasetInfo

__all__ = ["CATALOG"]

_PLANETOID = "https://github.com/kimiyoung/planetoid/tree/master/data"
_GNN_BENCH = "https://github.com/shchur/gnn-benchmark/tree/master/data/npz"
_DGL = "https://data.dgl.ai/dataset/"
_HETERO = "https://github.com/yandex-research/heterophilous-graphs/tree/main/data"
_GEOM = "https://github.com/graphdml-uiuc-jlu/geom-gcn"
_LINKX = "https://github.com/CUAI/Non-Homophily-Large-Scale/tree/master/data"
_OGB = "https://ogb.stanford.edu/docs/nodeprop/"
_OGBL = "https://ogb.stanford.edu/docs/linkprop/"
_SEAL = "https://github.com/muhanzhang/SEAL/tree/master/Python/data"
_MOLNET = "https://moleculenet.org/datasets-1 (MoleculeNet CSVs, e.g. DeepChem's S3 copies)"

# Raw-file download locations: the ones PyG's Planetoid, Amazon/Coauthor,
# HeterophilousGraphDataset, WebKB/Actor and LINKXDataset download from.
_PLANETOID_RAW = _PLANETOID.replace("/tree/", "/raw/")
_GNN_BENCH_RAW = _GNN_BENCH.replace("/tree/", "/raw/")
_HETERO_RAW = _HETERO.replace("/tree/", "/raw/")
_GEOM_RAW = "https://raw.githubusercontent.com/graphdml-uiuc-jlu/geom-gcn/master"
_LINKX_RAW = _LINKX.replace("/tree/", "/raw/")

_PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def _urls(base: str, *files: str) -> dict[str, str]:
    """``{file: base/file}`` (URL-quoted) for files laid out as in the source repository."""
    return {file: f"{base}/{quote(file)}" for file in files}


def _planetoid(name: str, prefix: str, description: str) -> DatasetInfo:
    files = tuple(f"ind.{prefix}.{part}" for part in _PLANETOID_PARTS)
    return DatasetInfo(
        name=name, format="planetoid", folder=f"planetoid_{prefix}", files=files,
        aliases=(f"planetoid-{name}",), params={"prefix": prefix},
        description=description + " (Planetoid public split)", source=_PLANETOID,
        urls=_urls(_PLANETOID_RAW, *files))


def _npz(name: str, folder: str, files: str, aliases: tuple[str, ...], description: str,
         source: str = _GNN_BENCH) -> DatasetInfo:
    return DatasetInfo(
        name=name, format="npz", folder=folder, files=(files,), aliases=aliases,
        split="per_class", description=description + " (random 20/30 per-class splits)",
        source=source, urls=_urls(_GNN_BENCH_RAW, files.split("|")[-1]))


def _hetero(name: str, *, metric: str = "acc", aliases: tuple[str, ...] = ()) -> DatasetInfo:
    stem = name.replace("-", "_")
    directed = name.endswith("-directed")
    return DatasetInfo(
        name=name, format="heterophilous_npz", folder="heterophilous_graphs",
        files=(f"{stem}.npz",), aliases=aliases, metric=metric, num_splits=10,
        params={"undirected": not directed},
        description=f"Platonov et al. 2023 {stem} ({'directed' if directed else 'undirected'}, "
                    f"10 provided splits)", source=_HETERO, urls=_urls(_HETERO_RAW, f"{stem}.npz"))


def _geom(name: str, stem: str, aliases: tuple[str, ...] = ()) -> DatasetInfo:
    splits = tuple(f"splits/{stem}_split_0.6_0.2_{i}.npz" for i in range(10))
    sparse = stem == "film"
    files = (f"new_data/{stem}/out1_node_feature_label.txt",
             f"new_data/{stem}/out1_graph_edges.txt", *splits)
    return DatasetInfo(
        name=name, format="geom_gcn", folder="geom_gcn", files=files,
        aliases=aliases, num_splits=10,
        params={"num_features": 932} if sparse else {},
        description=f"Geom-GCN {stem} (10 provided 60/20/20 splits)", source=_GEOM,
        urls=_urls(_GEOM_RAW, *files))


def _fb100(name: str, file: str, split_file: str | None = None) -> DatasetInfo:
    optional = (f"splits/{split_file}",) if split_file else ()
    return DatasetInfo(
        name=name, format="linkx_fb100", folder="linkx",
        files=(f"facebook100/{file}",), optional_files=optional, aliases=(f"fb100-{name}",),
        split="provided" if split_file else "ratio", num_splits=5 if split_file else 1,
        num_classes=2,
        description=f"LINKX Facebook100 {file[:-4]} (gender; "
                    f"{'5 provided' if split_file else 'random'} 50/25/25 splits)",
        source=_LINKX, urls=_urls(_LINKX_RAW, f"facebook100/{file}", *optional))


def _ogb(name: str, metric: str, description: str) -> DatasetInfo:
    return DatasetInfo(
        name=name, format="ogb_node", folder=name.replace("-", "_"), metric=metric,
        params={"name": name}, description=description + " (official OGB split)", source=_OGB)


def _seal(name: str, stem: str, description: str, aliases: tuple[str, ...] = ()) -> DatasetInfo:
    return DatasetInfo(
        name=name, format="seal_mat", folder="seal_link_prediction", files=(f"{stem}.mat",),
        task="link", aliases=(f"seal-{name}", *aliases), metric="rocauc", split="ratio",
        description=f"SEAL {description} (link prediction; seeded 85/5/10 edge splits)",
        source=_SEAL)


def _ogbl(name: str, metric: str, description: str) -> DatasetInfo:
    return DatasetInfo(
        name=name, format="ogb_link", folder=name.replace("-", "_"), task="link", metric=metric,
        params={"name": name}, description=description + " (official OGB edge split)",
        source=_OGBL)


def _molnet(name: str, file: str, smiles: str, labels: tuple[str, ...], description: str,
            ogb: str | None = None, aliases: tuple[str, ...] = ()) -> DatasetInfo:
    """A MoleculeNet CSV (graph-level; scaffold split 80/10/10 by default); also known under
    its OGB name ``ogbg-mol<ogb or name>`` (the same molecules; OGB's split is made the same way)."""
    regression = name in ("esol", "freesolv", "lipophilicity")
    task_type = "regression" if regression else "binary classification"
    return DatasetInfo(
        name=name, format="moleculenet", folder="moleculenet", files=(file,), task="graph",
        aliases=(f"ogbg-mol{ogb or name}", *aliases),
        metric="rmse" if regression else "rocauc", split="ratio", num_classes=len(labels),
        params={"smiles_column": smiles, "label_columns": labels, "task_type": task_type},
        description=f"MoleculeNet {description} ({len(labels)} task{'s' * (len(labels) > 1)}, "
                    f"{'RMSE' if regression else 'ROC-AUC'}; scaffold split)", source=_MOLNET)


_TOX21 = ("NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
          "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53")
_SIDER = (
    "Hepatobiliary disorders", "Metabolism and nutrition disorders", "Product issues",
    "Eye disorders", "Investigations", "Musculoskeletal and connective tissue disorders",
    "Gastrointestinal disorders", "Social circumstances", "Immune system disorders",
    "Reproductive system and breast disorders",
    "Neoplasms benign, malignant and unspecified (incl cysts and polyps)",
    "General disorders and administration site conditions", "Endocrine disorders",
    "Surgical and medical procedures", "Vascular disorders", "Blood and lymphatic system disorders",
    "Skin and subcutaneous tissue disorders", "Congenital, familial and genetic disorders",
    "Infections and infestations", "Respiratory, thoracic and mediastinal disorders",
    "Psychiatric disorders", "Renal and urinary disorders",
    "Pregnancy, puerperium and perinatal conditions", "Ear and labyrinth disorders",
    "Cardiac disorders", "Nervous system disorders",
    "Injury, poisoning and procedural complications")

CATALOG: tuple[DatasetInfo, ...] = (
    # Planetoid citation graphs, public split.
    _planetoid("cora", "cora", "Cora citation graph"),
    _planetoid("citeseer", "citeseer", "CiteSeer citation graph"),
    _planetoid("pubmed", "pubmed", "PubMed citation graph"),
    # gnn-benchmark npz (Shchur et al. 2018), also inside DGL zips.
    _npz("cora-npz", "gnn_benchmark_npz", "cora.npz", (), "Cora, gnn-benchmark npz"),
    _npz("citeseer-npz", "gnn_benchmark_npz", "citeseer.npz", (),
         "CiteSeer, gnn-benchmark npz"),
    _npz("amazon-photo", "amazon_photo", "amazon_co_buy_photo.zip|amazon_electronics_photo.npz",
         ("photo",), "Amazon co-purchase Photo", _DGL + "amazon_co_buy_photo.zip"),
    _npz("amazon-computers", "amazon_computers",
         "amazon_co_buy_computer.zip|amazon_electronics_computers.npz",
         ("computers",), "Amazon co-purchase Computers", _DGL + "amazon_co_buy_computer.zip"),
    _npz("coauthor-cs", "coauthor_cs", "coauthor_cs.zip|ms_academic_cs.npz", ("cs",),
         "Coauthor CS", _DGL + "coauthor_cs.zip"),
    _npz("coauthor-physics", "coauthor_physics", "coauthor_physics.zip|ms_academic_phy.npz",
         ("physics",), "Coauthor Physics", _DGL + "coauthor_physics.zip"),
    # Heterophilous graphs (Platonov et al. 2023); binary sets use ROC-AUC.
    _hetero("roman-empire"),
    _hetero("amazon-ratings"),
    _hetero("minesweeper", metric="rocauc"),
    _hetero("tolokers", metric="rocauc"),
    _hetero("questions", metric="rocauc"),
    *(_hetero(f"{base}{suffix}") for base in ("chameleon", "squirrel")
      for suffix in ("", "-directed", "-filtered", "-filtered-directed")),
    _hetero("actor"),
    _hetero("cornell"),
    _hetero("texas"),
    _hetero("texas-4-classes"),
    _hetero("wisconsin"),
    # Geom-GCN (Pei et al. 2020) raw files with their 10 splits.
    _geom("geom-cornell", "cornell"),
    _geom("geom-texas", "texas"),
    _geom("geom-wisconsin", "wisconsin"),
    _geom("geom-film", "film", aliases=("geom-actor", "film")),
    # LINKX (Lim et al. 2021).
    _fb100("penn94", "Penn94.mat", "fb100-Penn94-splits.npy"),
    _fb100("amherst41", "Amherst41.mat"),
    _fb100("reed98", "Reed98.mat"),
    _fb100("johnshopkins55", "Johns Hopkins55.mat"),
    _fb100("cornell5", "Cornell5.mat"),
    DatasetInfo(
        name="twitch-de", format="linkx_twitch", folder="linkx",
        files=("twitch/DE/musae_DE_edges.csv", "twitch/DE/musae_DE_features.json",
               "twitch/DE/musae_DE_target.csv"),
        optional_files=("splits/twitch-e-DE-splits.npy",), aliases=("twitch-e", "twitch-e-de"),
        metric="rocauc", num_splits=5, num_classes=2, params={"lang": "DE"},
        description="LINKX Twitch-DE (mature flag; 5 provided 50/25/25 splits)", source=_LINKX),
    # OGB, read through the ogb package.
    _ogb("ogbn-arxiv", "acc", "OGB arXiv citation graph"),
    _ogb("ogbn-products", "acc", "OGB Amazon products co-purchase graph"),
    # Link prediction (task="link", graphmoe.data.link): SEAL / WLNM networks without node
    # attributes (structural features, option features=...), and OGB through the ogb package.
    # Any node dataset (cora, citeseer, ...) also serves link prediction through
    # graphmoe.data.link.load_link_dataset.
    _seal("usair", "USAir", "US Air lines (332 nodes, 2,126 edges)"),
    _seal("ns", "NS", "network-science co-authorship (1,589 nodes, 2,742 edges)"),
    _seal("pb", "PB", "political blogs (1,222 nodes, 16,714 edges)"),
    _seal("yeast", "Yeast", "yeast protein interactions (2,375 nodes, 11,693 edges)"),
    _seal("celegans", "Celegans", "C. elegans neural network (297 nodes, 2,148 edges)"),
    _seal("power", "Power", "US power grid (4,941 nodes, 6,594 edges)"),
    _seal("router", "Router", "router-level Internet (5,022 nodes, 6,258 edges)"),
    _seal("ecoli", "Ecoli", "E. coli metabolic network (1,805 nodes, 14,660 edges)"),
    _ogbl("ogbl-ddi", "hits@20", "OGB drug-drug interactions"),
    _ogbl("ogbl-collab", "hits@50", "OGB author collaborations"),
    _ogbl("ogbl-ppa", "hits@100", "OGB protein-protein associations"),
    # Graph-level (task="graph", graphmoe.data.graphs): MoleculeNet CSVs (Wu et al. 2018), SMILES
    # turned into graphs by ogb.utils.smiles2graph (needs the chem extra: RDKit). Columns as in
    # PyG's MoleculeNet table; aliases are the OGB names of the same molecules.
    _molnet("bbbp", "BBBP.csv", "smiles", ("p_np",), "blood-brain barrier penetration"),
    _molnet("esol", "ESOL_delaney-processed.csv", "smiles",
            ("measured log solubility in mols per litre",), "ESOL water solubility (log mol/L)",
            aliases=("delaney",)),
    _molnet("freesolv", "FreeSolv_SAMPL.csv", "smiles", ("expt",),
            "FreeSolv hydration free energy (kcal/mol)", aliases=("sampl",)),
    _molnet("lipophilicity", "Lipophilicity.csv", "smiles", ("exp",),
            "lipophilicity (octanol/water logD)", ogb="lipo", aliases=("lipo",)),
    _molnet("bace", "bace.csv", "smiles", ("Class",), "BACE-1 inhibition"),
    _molnet("hiv", "HIV.csv", "smiles", ("HIV_active",), "HIV replication inhibition"),
    _molnet("tox21", "tox21.csv", "smiles", _TOX21, "Tox21 toxicity"),
    _molnet("sider", "sider.csv", "smiles", _SIDER, "SIDER side effects"),
    _molnet("clintox", "clintox.csv", "smiles", ("FDA_APPROVED", "CT_TOX"),
            "ClinTox clinical toxicity"),
    # The embedded default: no files needed.
    DatasetInfo(
        name="csbm", format="csbm", split="ratio", aliases=("synthetic",),
        description="Synthetic CSBM: homophilous region, weak features; heterophilous, strong"),
)
