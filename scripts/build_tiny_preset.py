#!/usr/bin/env python
"""Build the embedded "tiny" FLUX preset: a diffusers-format folder with random weights.

    python scripts/build_tiny_preset.py [--out DIR] [--seed N]

The folder has the same layout and component classes as FLUX.1-dev, at tiny sizes, so
``diffusers.FluxPipeline.from_pretrained(DIR, local_files_only=True)`` loads it on a CPU
in a fraction of a second (about 12 MB):

    model_index.json
    scheduler/      FlowMatchEulerDiscreteScheduler, FLUX.1-dev's config
    text_encoder/   CLIPTextModel (hidden 32, 2 layers)                  model.safetensors
    tokenizer/      CLIPTokenizer, byte-level BPE (1514 tokens)          tokenizer.json, vocab.json, merges.txt
    text_encoder_2/ T5EncoderModel (d_model 32, 2 layers, gated-gelu)    model.safetensors
    tokenizer_2/    T5 tokenizer, Unigram (1000 tokens)                  tokenizer.json
    transformer/    FluxTransformer2DModel (2 + 4 blocks, 4 heads x 32)  diffusion_pytorch_model.safetensors
    vae/            AutoencoderKL (24/32/64/64: scale 8, 16 latent ch.) diffusion_pytorch_model.safetensors

Everything is built offline from the prompt-like English corpus embedded below, plus
SubjectWorld's own captions and descriptions (so each of its words is one token): the T5
Unigram model with ``tokenizers``' UnigramTrainer, the CLIP merges with a small BPE loop
over the words that CLIPTokenizer's own (``tokenizers``) pre-tokenizer cuts. Every model is
initialised from ``torch.manual_seed(seed)``. The whole folder is deterministic: two runs,
in two processes, give byte-identical files. It is written atomically: built in a
temporary folder beside the target, which then replaces the target.

These random weights are a placeholder. The SubjectWorld training script overwrites the
weight files in this folder with trained ones; that is a data change, the code that loads
the folder does not change. Token ids are what trained embeddings are indexed by, so
changing the corpus or the vocabulary sizes here invalidates trained weights.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import string
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "smg_sdk" / "presets" / "tiny" / "flux"
DEFAULT_SEED = 0

# --- sizes ---------------------------------------------------------------------------
CLIP_NUM_MERGES = 1000  # CLIP vocab = 256 bytes + 256 bytes</w> + merges + 2 specials
CLIP_MAX_LENGTH = 77
T5_UNIGRAM_SIZE = 900  # pieces incl. <pad>, </s>, <unk>; 100 <extra_id_*> follow, as in T5
T5_EXTRA_IDS = 100
T5_MAX_LENGTH = 512
T5_MAX_PIECE_LENGTH = 12
HIDDEN = 32  # CLIP hidden size = T5 d_model = transformer joint/pooled projection dims
LATENT_CHANNELS = 16  # as FLUX.1; the transformer reads 2x2 patches of them (64 channels)

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
T5_PAD, T5_EOS, T5_UNK = "<pad>", "</s>", "<unk>"

# FLUX.1-dev's scheduler/scheduler_config.json.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)

# --- corpus --------------------------------------------------------------------------
# Prompt-like English covering the vocabulary of subject-driven generation: subjects,
# colours, patterns, materials, scenes, spatial relations, styles and editing requests.
CORPUS = """\
a photo of a dog
a photo of a cat
a photo of a backpack
a photo of a teapot
a photo of a duck toy
a photo of a robot toy
a photo of a guitar
a photo of a mug
a photo of a sneaker
a photo of a red backpack on the beach
a photo of a white teapot on a wooden table
a photo of a yellow duck toy in a bathtub
a photo of a small robot standing on a desk
a photo of an acoustic guitar leaning against a brick wall
a photo of a blue ceramic mug next to a laptop
a photo of a pair of white sneakers on a city street
a dog sitting on the beach at sunset
a cat sleeping on a sofa in a living room
a golden retriever running through a field of flowers
a corgi wearing a red scarf in the snow
a fluffy white kitten playing with a ball of yarn
a tabby cat sitting on a windowsill looking outside
a puppy lying on a green carpet
a black dog swimming in a lake
a brown dog with a blue collar in a park
a grey cat wearing sunglasses on a rooftop
a dog to the left of a cat
a cat to the right of a dog
a teapot above a mug on a shelf
a mug below a teapot on a kitchen counter
a backpack next to a guitar in a bedroom
a duck toy between two sneakers
a robot in front of a bookshelf
a guitar behind a wooden chair
a dog in the top left corner of the image
a cat in the bottom right corner of the image
a mug in the top right corner and a teapot in the bottom left corner
a robot in the center of the image
a red ball on top of a blue box
a green plant under a table
a yellow umbrella beside a bench
a vase near a window with morning light
a clock on the wall above a fireplace
a candle on a table next to a book
a teddy bear sitting on a bed
a plush monster toy on a shelf
a wooden bowl filled with apples
a glass bottle on the sand
a metal can on a picnic blanket
a desk lamp next to a stack of books
a leather boot in the mud
a striped scarf hanging on a hook
a polka dot dress on a mannequin
a checkered tablecloth with a teapot and two cups
a plaid blanket folded on a chair
a floral vase on a marble countertop
a spotted mug with a pink handle
a zigzag pattern on a ceramic plate
a red and white striped lighthouse by the sea
a blue and yellow checkered backpack
a purple robot with orange eyes
a pink duck toy floating in a pool
a silver teapot with a golden lid
a black guitar with a white pickguard
an orange cat and a brown dog on a couch
a turquoise mug with a white interior
a crimson sneaker with white laces
a beige backpack with leather straps
a navy blue jacket on a wooden hanger
a lavender candle in a glass jar
an olive green backpack on a mountain trail
a cyan robot toy on a white background
a maroon teapot with gold trim
a magenta ball next to a teal box
a teal sneaker beside a grey sneaker
the dog on the beach
the same dog in the snow
the same cat on a skateboard
the same backpack on a mountain top
the same teapot floating in space
the same duck toy in the jungle
the same robot on the moon
the same guitar under a tree
the same mug in a coffee shop
the same sneaker on a basketball court
a dog in a bucket
a dog wearing a chef outfit
a dog wearing a rainbow scarf
a dog with a wizard hat
a cat in a police outfit
a cat wearing a santa hat
a cat with a pink bow tie
a backpack with a mountain in the background
a backpack with the eiffel tower in the background
a teapot with a city in the background
a duck toy with a blue house in the background
a robot with a waterfall in the background
a guitar on top of a purple rug in a forest
a mug on top of pink fabric
a sneaker on top of a dirty road
a sneaker on top of the sidewalk in a crowded street
a red dog
a purple cat
a shiny backpack
a wet teapot
a cube shaped mug
a rainbow colored duck toy
a golden robot
a transparent guitar
an oil painting of a dog
a watercolor painting of a cat
a pencil sketch of a teapot
a cartoon drawing of a robot
a 3d render of a duck toy
pixel art of a guitar
an anime style illustration of a backpack
a cinematic shot of a sneaker in the rain
a close-up photo of a mug with steam rising
a macro shot of a duck toy with water drops
a wide angle photo of a dog in a meadow
a top view of a teapot and a cup on a tray
a side view of a sneaker on a white background
an isometric render of a small robot
a high resolution photograph of a cat
a studio photo of a backpack with soft lighting
a portrait of a dog with shallow depth of field
a photo of a cat with bokeh lights in the background
a blurry photo of a guitar on a stage
a black and white photo of a teapot
a vintage photo of a dog on a porch
a polaroid photo of a duck toy
a low light photo of a robot in a dark room
a bright photo of a mug on a sunny windowsill
two dogs playing in the grass
three cats sitting in a row
four mugs lined up on a shelf
several duck toys in a bathtub
a dog and a cat sitting side by side
a teapot and a mug on a wooden tray
a backpack and a guitar leaning against a wall
a robot holding a mug
a dog holding a ball in its mouth
a cat looking at a goldfish bowl
a duck toy on the left and a robot on the right
a mug on the left and a teapot on the right
a sneaker above a backpack
a guitar below a painting
a cat between a dog and a robot
a teapot between two mugs
a dog in front of a house
a robot behind a glass window
a backpack next to a tent at a campsite
a mug next to a notebook and a pen
a cat on the left side of the bed
a dog on the right side of the road
a duck toy at the edge of a bathtub
a teapot in the middle of a table
a robot far from a dog
a cat near a fireplace
a dog facing a mirror
a cat facing away from the camera
a sneaker pointing to the left
a guitar lying on its side
the dog is on the left of the cat
the cat is on the right of the dog
the mug is above the book
the book is below the mug
the robot is next to the plant
the teapot is between the cup and the vase
the backpack is in front of the door
the guitar is behind the sofa
put the dog on the beach
place the teapot on a wooden table
move the robot to the left
move the mug to the top right corner
make the backpack red
make the cat wear a hat
change the background to a snowy mountain
change the color of the sneaker to blue
replace the cup with a teapot
remove the dog from the image
add a cat next to the dog
keep the identity of the dog
keep the same teapot but change the scene
the subject from the reference image in a new pose
the subject from the first image next to the subject from the second image
the dog from image one and the cat from image two on a beach
the reference dog sitting in a garden
a new view of the reference teapot
the same robot seen from behind
the same backpack seen from above
a sks dog in the snow
a sks cat on a sofa
a sks backpack on a mountain
a sks teapot in a kitchen
a photo of sks duck toy on a lake
a photo of sks robot in a city at night
a photo of sks guitar on stage
a photo of sks mug on a desk
a photo of sks sneaker on a running track
a fox in a forest at dawn
a rabbit in a field of clover
an owl on a branch under the moon
a parrot with red and green feathers
a turtle on a rock by the river
a horse running on a sandy beach
an elephant in the savanna
a penguin on an iceberg
a bird on a telephone wire
a hamster in a cardboard box
a lion resting in tall grass
a panda eating bamboo
a koala sleeping in a tree
a frog on a lily pad
a goldfish in a round bowl
a red car parked on a street
a blue bicycle leaning against a fence
a yellow taxi in the rain
a wooden chair in an empty room
a sofa with striped cushions
a suitcase at an airport
a hat on a wooden peg
a wristwatch on a velvet cushion
a camera on a tripod
a pair of headphones on a desk
a red balloon in the sky
a kite flying over the hills
a cactus in a terracotta pot
a sunflower in a glass vase
a pumpkin on a porch
a basket of oranges
a chocolate cake with candles
a donut with pink frosting
a slice of pizza on a plate
a cup of coffee with latte art
a bowl of ramen with chopsticks
a knitted wool hat
a denim jacket with brass buttons
a velvet armchair
a porcelain vase with blue flowers
a bronze statue in a museum
a copper kettle on a stove
a marble bust on a pedestal
a plastic toy car on a carpet
a glass marble on a mirror
a paper boat on a puddle
a stone bridge over a stream
a lighthouse on a cliff
a cabin in the woods
a castle on a hill
a bridge in the fog
a street at night with neon lights
a beach with palm trees
a desert with sand dunes
a snowy mountain under a clear sky
a forest in autumn with orange leaves
a city skyline at sunset
an underwater coral reef
a garden with roses and tulips
a library with tall shelves
a kitchen with white tiles
a living room with a fireplace
a bedroom with soft morning light
a classroom with a blackboard
a rooftop terrace with plants
a train station platform
a market stall with fruit
a swimming pool on a summer day
a wheat field under a stormy sky
a rainy street reflecting the lights
a quiet lake surrounded by pine trees
a meadow with wildflowers and butterflies
a cozy cafe with wooden tables
the surface of the moon with craters
outer space with stars and a nebula
a herringbone patterned wooden floor
a photorealistic render of a chrysanthemum
a kaleidoscopic pattern of hexagons
a tessellated mosaic of triangles
a paisley scarf in burgundy and mustard
a chevron rug with tangerine stripes
a houndstooth coat on a hanger
a xylophone made of colorful bars
a saxophone on a jazz club stage
an accordion on a cobblestone street
a hippopotamus in a muddy river
a zeppelin floating over the harbour
a bioluminescent jellyfish in the dark ocean
a quizzical owl tilting its head
an iridescent beetle on a leaf
a translucent jellyfish
a weathered lighthouse keeper
a dilapidated greenhouse full of ferns
a meticulously embroidered tapestry
an extraordinarily detailed miniature village
a giraffe eating leaves from a tall acacia tree
a zebra drinking from a waterhole at noon
a kangaroo hopping across the outback
a squirrel holding an acorn on a branch
a hedgehog curled up in a pile of leaves
a raccoon peeking out of a trash can
a badger digging near a hollow log
an otter floating on its back in a kelp forest
a beaver building a dam across a creek
a deer standing in a misty clearing
a moose wading through a marsh
a wolf howling on a ridge at midnight
a brown bear catching salmon in a river
a tiger prowling through tall reeds
a leopard lounging on a thick branch
a cheetah sprinting across the plains
a monkey swinging from a vine
a gorilla sitting in a bamboo grove
a sloth hanging upside down from a branch
a camel walking through the dunes at dusk
a llama wearing a colorful blanket
an alpaca with fluffy cream fur
a sheep grazing on a green hillside
a goat standing on a rocky ledge
a cow resting in a sunny pasture
a pig rolling in the mud on a farm
a chicken pecking at grain in a barnyard
a rooster crowing on a fence post
a peacock spreading its tail feathers
a flamingo standing on one leg in a lagoon
a swan gliding across a calm pond
a goose honking at the edge of a canal
a pelican perched on a wooden pier
a seagull flying over the harbor
an eagle soaring above a canyon
a hawk circling over a wheat field
a falcon perched on a leather glove
a crow sitting on a scarecrow
a pigeon on a statue in a plaza
a sparrow bathing in a birdbath
a hummingbird hovering near a red blossom
a butterfly resting on a lavender sprig
a dragonfly above a pond with reeds
a ladybug crawling on a blade of grass
a bee collecting pollen from a daisy
an ant carrying a crumb across a picnic table
a spider weaving a web between two twigs
a snail leaving a shiny trail on a stone
a crab scuttling along the shore
a lobster in a tank at a seafood market
an octopus hiding inside a clay jar
a squid glowing in the deep sea
a shark swimming above a sunken ship
a whale breaching beside a fishing boat
a dolphin leaping through the waves
a seal lounging on a rocky beach
a walrus with long tusks on an ice floe
a starfish in a tide pool
a seahorse among swaying seaweed
a lizard basking on a warm rock
a chameleon changing colors on a twig
an iguana on a sunlit wall
a snake coiled around a tree trunk
a crocodile lurking in a murky swamp
a dinosaur skeleton in a museum hall
a dragon breathing fire over a medieval village
a unicorn grazing in an enchanted glade
a spoon and a fork beside a porcelain plate
a sharp knife on a bamboo cutting board
a saucer under a steaming cup of tea
a glass pitcher full of lemonade
a mason jar filled with honey
a steel thermos on a hiking trail
a toaster with two slices of bread
a blender making a strawberry smoothie
a microwave on a cluttered countertop
a fridge covered with magnets and drawings
an oven with a tray of cookies inside
a sink with a dripping faucet
a fluffy towel draped over a bathtub
a bar of soap on a seashell dish
a toothbrush in a ceramic holder
a comb and a hairbrush on a vanity
an oval mirror with an ornate gilded frame
a pillow with embroidered initials
a patchwork quilt on an iron bed
sheer curtains blowing in the breeze
a drawer full of mismatched socks
a cabinet with glass doors and teacups
a wardrobe with carved wooden panels
a stool at a kitchen island
a hammock strung between two palms
a ladder leaning against an apple tree
a bucket and a shovel on the sand
a rake next to a wheelbarrow of leaves
a hammer, a screwdriver, and a wrench on a workbench
a pair of pliers and a saw in a toolbox
a flashlight shining into a dark cave
a lantern glowing on a camping table
a brass compass on an old map
a spinning globe on a teacher's desk
a telescope pointed at the stars
a microscope in a laboratory
a calculator next to a spreadsheet
a mechanical keyboard with rainbow backlight
a wireless mouse on a cork mousepad
a monitor showing a mountain wallpaper
a tablet propped up on a stand
a printer spitting out a sheet of paper
a bluetooth speaker on a bookshelf
a retro radio with chrome knobs
a television flickering in a dim room
a remote control on the arm of a couch
a joystick for an arcade machine
a skateboard with worn grip tape
a scooter parked outside a bakery
a motorcycle helmet on a seat
woolen gloves and mittens on a radiator
striped socks drying on a clothesline
sandals by the door of a beach hut
fuzzy slippers next to a fireplace
leather loafers on a shoe rack
strawberries and blueberries in a bowl
a cherry on top of a sundae
a bunch of grapes on a vine
a lemon and a lime cut in half
a ripe peach and a pear on a windowsill
a plum in a wicker basket
a slice of watermelon on a hot day
a pineapple wearing sunglasses
a mango smoothie with a paper straw
a kiwi cut into thin slices
an avocado on whole grain toast
tomatoes, carrots, and potatoes at a farmers market
onions and garlic hanging in a pantry
broccoli and cucumber in a salad
a red pepper and a yellow pepper
mushrooms growing on a mossy log
corn on the cob with melted butter
a loaf of sourdough bread on a board
a flaky croissant with a cappuccino
a bagel with cream cheese
a soft pretzel with coarse salt
a blueberry muffin in a paper liner
a cupcake with sprinkles and a candle
a stack of pancakes with maple syrup
a crispy waffle with whipped cream
a club sandwich cut into triangles
a cheeseburger with fries
three tacos on a colorful plate
sushi rolls on a slate platter
a bowl of noodles with a soft boiled egg
tomato soup with a grilled cheese sandwich
a wedge of cheese next to crackers
a jar of strawberry jam and a butter knife
a carton of milk and a glass of orange juice
a volcano erupting at twilight
a glacier calving into a turquoise fjord
a waterfall cascading into a rocky valley
a tropical island with a lagoon
a marina full of sailboats
a boardwalk along a sandy shore
a carnival with a ferris wheel at dusk
an amusement park with a roller coaster
a football stadium under bright floodlights
a theater stage with red velvet curtains
an art gallery with white walls
a gothic cathedral with stained glass windows
a temple on a misty mountainside
a pagoda surrounded by cherry blossoms
a palace courtyard with a marble fountain
ancient ruins overgrown with ivy
a red barn on a quiet farm
a vineyard on rolling hills
an orchard with rows of apple trees
a prairie under an enormous sky
a frozen tundra with scattered lichen
a steamy rainforest with giant leaves
a subway car during rush hour
a narrow alley with hanging lanterns
a parking lot at a gas station
a laundromat with round washing machines
a cozy bookstore with a reading nook
a florist shop full of peonies
a glossy metallic sphere on a checkerboard floor
a furry monster with googly eyes
a wrinkled paper bag with a doodle
a crumpled letter on a desk
a polished brass doorknob
a rusty bicycle chained to a railing
a dusty attic with an old trunk
muddy boots on a doormat
frosty windows on a winter morning
an icy road through a pine forest
a foggy harbor at dawn
a hazy skyline on a humid afternoon
a cloudy sky over a lavender field
a windy beach with flying sand
a puppy jumping over a log
a kitten climbing a curtain
a girl reading a book under a tree
a boy painting a fence
a chef cooking pasta in a busy kitchen
an astronaut waving from the surface of mars
a knight riding a horse across a drawbridge
a wizard reading a glowing spellbook
a pirate ship sailing through a storm
an impressionist painting of a water lily pond
a cubist portrait of a cat
a surrealist scene with melting clocks
a baroque still life with fruit and a skull
a renaissance fresco of angels
a minimalist poster of a single leaf
an art deco illustration of a skyscraper
an art nouveau poster with flowing hair
a ukiyo-e print of a great wave
a charcoal drawing of a horse
a gouache painting of a fishing village
a pastel drawing of a sleeping baby
an ink wash painting of bamboo
a woodcut print of a raven
a collage of magazine clippings
an origami crane made of red paper
a claymation character holding an umbrella
a stained glass window with a peacock
graffiti on a brick wall in an alley
a mural of sunflowers on a school wall
a needlepoint of a cottage garden
a blueprint of a flying machine
a diagram showing the parts of a flower
an infographic about recycling
a low poly model of a fox
a voxel sculpture of a castle
a neon sign shaped like a flamingo
a hologram of a spinning planet
a snow globe with a tiny village inside
a music box with a dancing ballerina
a chess board with a knight and a bishop
a deck of cards spread on green felt
a pair of dice on a wooden table
a jigsaw puzzle with one missing piece
a rubik's cube on a stack of notebooks
a yo-yo and a spinning top
a toy train circling a christmas tree
a dollhouse with tiny furniture
a tin soldier on a windowsill
a wooden rocking horse in a nursery
a kaleidoscope on a velvet cushion
A photo of a Dog on the Beach.
A Cat, a Mug, and a Teapot!
Two robots (red and blue) next to each other.
The backpack is 30 cm tall and weighs 2 kg.
Is the duck toy yellow? Yes, it is yellow.
A guitar; a mug; a sneaker: three objects in a row.
image 1 shows a dog, image 2 shows a cat.
Subject 1 is on the left, subject 2 is on the right.
A 64x64 image of a cat at 50% zoom.
Rotate the teapot by 90 degrees & keep its colour.
the colour grey and the color gray are the same
one two three four five six seven eight nine ten
first second third left right top bottom middle center
north south east west up down inside outside
big small large tiny huge short tall long wide narrow round square
bright dark light heavy soft hard smooth rough shiny matte
hot cold warm cool wet dry old new clean dirty
happy sad angry calm sleepy curious playful
"""

# Extra lines from templates: more occurrences of the core vocabulary, so its words end up
# as single pieces while the rare words above stay split.
_SUBJECTS = [
    "dog", "cat", "backpack", "teapot", "duck toy", "robot", "guitar", "mug", "sneaker",
    "vase", "clock", "candle", "teddy bear", "bowl", "bottle", "lamp", "chair", "ball",
    "box", "cup", "book", "hat", "boot", "owl", "fox", "rabbit", "plant",
]
_COLOURS = [
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black",
    "white", "grey", "teal", "silver", "golden",
]
_PATTERNS = ["striped", "polka dot", "checkered", "plaid", "floral", "spotted", "plain"]
_MATERIALS = ["wooden", "metal", "ceramic", "glass", "plastic", "leather", "wool", "paper"]
_RELATIONS = [
    "to the left of", "to the right of", "above", "below", "next to", "in front of",
    "behind", "on top of", "under", "beside", "near",
]
_PLACES = [
    "top left corner", "top right corner", "bottom left corner", "bottom right corner",
    "center", "left side", "right side", "top", "bottom",
]
_SCENES = [
    "on the beach", "in the snow", "in a forest", "on a wooden table", "in a kitchen",
    "on a city street", "in the jungle", "at sunset", "in a living room", "in a garden",
    "on the moon", "in a desert", "by a lake", "on a mountain top", "on a white background",
]
_STYLES = ["a photo of", "a picture of", "an image of", "a painting of", "a render of"]


def subjectworld_lines(count: int = 600) -> list[str]:
    """SubjectWorld's language (captions, instructions, identity descriptions, plan sentences), so
    every word of it is one token and a six-subject caption fits in the T5 length the preset uses."""
    sys.path.insert(0, str(REPO_ROOT))
    from smg_sdk.data.subjectworld import SubjectWorld, all_identities

    captions = SubjectWorld("train", "caption", seed=4321, subjects=(1, 2, 3, 4, 5, 6))
    references = SubjectWorld("train", "reference", seed=4321, subjects=(1, 2, 3))
    lines = [captions[i].caption for i in range(count // 2)]
    lines += [references[i].cot for i in range(count // 4)]
    lines += [identity.describe() for identity in all_identities()[:: max(1, len(all_identities()) // (count // 4))]]
    return lines


def corpus_lines(n_templated: int = 320, seed: int = 1234) -> list[str]:
    """The embedded corpus, ``n_templated`` deterministic template lines and SubjectWorld's lines."""
    rng = random.Random(seed)
    lines = [line for line in CORPUS.splitlines() if line.strip()] + subjectworld_lines()

    def thing() -> str:
        parts = [rng.choice(_COLOURS)]
        if rng.random() < 0.3:
            parts.append(rng.choice(_PATTERNS))
        if rng.random() < 0.3:
            parts.append(rng.choice(_MATERIALS))
        parts.append(rng.choice(_SUBJECTS))
        words = " ".join(parts)
        return ("an " if words[0] in "aeiou" else "a ") + words

    for i in range(n_templated):
        kind = i % 4
        if kind == 0:
            line = f"{rng.choice(_STYLES)} {thing()} {rng.choice(_RELATIONS)} {thing()} {rng.choice(_SCENES)}"
        elif kind == 1:
            line = f"{thing()} in the {rng.choice(_PLACES)} of the image {rng.choice(_SCENES)}"
        elif kind == 2:
            line = f"{thing()} between {thing()} and {thing()}"
        else:
            line = f"the same {rng.choice(_SUBJECTS)} {rng.choice(_SCENES)}, {rng.choice(_RELATIONS)} {thing()}"
        lines.append(line)
    return lines


# --- tokenizers ----------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table (the byte-level alphabet order)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def learn_bpe_merges(
    words: dict[tuple[str, ...], int], num_merges: int, min_frequency: int = 2
) -> list[tuple[str, str]]:
    """Byte-pair merges learnt from ``words`` (symbol tuples -> counts), most frequent pair
    first, ties broken by the pair itself.

    ``tokenizers.trainers.BpeTrainer`` learns the same merges, but it breaks ties between
    equally frequent pairs by ids that come from a hash map, so their order (and with it
    the tokenization) changes from one process to the next. This loop is deterministic.
    """
    symbols = [list(w) for w in sorted(words)]
    counts = [words[w] for w in sorted(words)]
    pair_counts: dict[tuple[str, str], int] = {}
    where: dict[tuple[str, str], set[int]] = {}

    def count(i: int, sign: int) -> None:
        w = symbols[i]
        for pair in zip(w, w[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + sign * counts[i]
            if sign > 0:
                where.setdefault(pair, set()).add(i)

    for i in range(len(symbols)):
        count(i, +1)
    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges and pair_counts:
        best, n = min(pair_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if n < min_frequency:
            break
        merges.append(best)
        merged = best[0] + best[1]
        for i in sorted(where.pop(best, ())):
            count(i, -1)
            w, out, j = symbols[i], [], 0
            while j < len(w):
                if j + 1 < len(w) and (w[j], w[j + 1]) == best:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            symbols[i] = out
            count(i, +1)
        pair_counts = {p: c for p, c in pair_counts.items() if c > 0}
    return merges


def build_clip_tokenizer(lines: list[str]):
    """CLIPTokenizer with byte-level BPE merges learnt from ``lines``.

    Vocab layout as in openai/clip-vit-large-patch14: the 256 byte symbols, the same 256
    with ``</w>``, one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``.
    Every byte has a symbol, so any string tokenizes without an unknown token.
    """
    from transformers import CLIPTokenizer

    # Cut the corpus into words with CLIPTokenizer's own normalizer and pre-tokenizer
    # (lower-casing, CLIP's split regex, byte-level alphabet), so the merges are learnt
    # on exactly the units the tokenizer will see.
    template = CLIPTokenizer(vocab={CLIP_BOS: 0, CLIP_EOS: 1}, merges=[]).backend_tokenizer
    words: dict[tuple[str, ...], int] = {}
    for line in lines:
        for word, _ in template.pre_tokenizer.pre_tokenize_str(template.normalizer.normalize_str(line)):
            key = (*word[:-1], word[-1] + "</w>")
            words[key] = words.get(key, 0) + 1
    merges = learn_bpe_merges(words, CLIP_NUM_MERGES)

    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += [CLIP_BOS, CLIP_EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=CLIP_MAX_LENGTH)
    return tokenizer, vocab, merges


def save_clip_tokenizer(tokenizer, vocab: dict[str, int], merges: list[tuple[str, str]], folder: Path) -> None:
    """tokenizer.json + tokenizer_config.json (transformers 5) and vocab.json + merges.txt
    (the classic CLIP files, which transformers 4's slow CLIPTokenizer reads)."""
    tokenizer.save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )


def build_t5_tokenizer(lines: list[str]):
    """T5 tokenizer with a Unigram model trained on ``lines``.

    Layout as in T5: ``<pad>``=0, ``</s>``=1, ``<unk>``=2, the trained pieces, then
    ``<extra_id_99>`` ... ``<extra_id_0>``. Metaspace pre-tokenization, ``</s>`` appended.
    Printable ASCII is in the alphabet, so ASCII text never maps to ``<unk>``.
    """
    from tokenizers import Tokenizer
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer
    from transformers import T5TokenizerFast

    # Words as T5TokenizerFast's own pre-tokenizer cuts them: "▁photo", "▁of", "▁a", ...
    pre_tokenizer = T5TokenizerFast(extra_ids=0).backend_tokenizer.pre_tokenizer
    words = [w for line in lines for w, _ in pre_tokenizer.pre_tokenize_str(line)]
    # The trainer seeds its candidate pieces from a suffix array over the *distinct* words,
    # each followed by a boundary, and keeps only substrings that occur with two different
    # right contexts. A whole word never qualifies (the boundary always follows it), so
    # "▁the" or "▁teapot" could never become a piece. Adding each distinct word once more
    # with a trailing "▁" gives every word a second context. (A piece ending in "▁" still
    # never qualifies, and words are the training units, so no piece crosses a word.)
    words += sorted({w + "▁" for w in words})
    # Every character of the alphabet as a unit of its own, twice: each becomes a trained
    # piece. (Otherwise the trainer appends the unseen ones with scores in hash-map order.)
    alphabet = sorted({*string.ascii_letters, *string.digits, *string.punctuation, *(c for w in words for c in w)})
    words += alphabet * 2

    backend = Tokenizer(Unigram())  # no pre-tokenizer: each item of `words` is one unit
    trainer = UnigramTrainer(
        vocab_size=T5_UNIGRAM_SIZE,
        show_progress=False,
        special_tokens=[T5_PAD, T5_EOS, T5_UNK],
        unk_token=T5_UNK,
        initial_alphabet=alphabet,
        max_piece_length=T5_MAX_PIECE_LENGTH,
    )
    backend.train_from_iterator(words, trainer)
    pieces = [(p, float(s)) for p, s in json.loads(backend.to_str())["model"]["vocab"]]
    specials, pieces = pieces[:3], pieces[3:]
    assert [p for p, _ in specials] == [T5_PAD, T5_EOS, T5_UNK], specials
    # The trainer orders pieces by score, ties in hash-map order, and its float sums run in
    # hash-map order too: round the scores and sort ties by the piece, so that ids and
    # scores do not depend on the process.
    pieces = sorted(((p, round(s, 6)) for p, s in pieces), key=lambda ps: (-ps[1], ps[0]))
    pieces = specials + pieces + [(f"<extra_id_{i}>", 0.0) for i in range(T5_EXTRA_IDS - 1, -1, -1)]
    return T5TokenizerFast(vocab=pieces, extra_ids=T5_EXTRA_IDS, model_max_length=T5_MAX_LENGTH)


# --- models --------------------------------------------------------------------------


def build_models(clip_tok, t5_tok, seed: int) -> dict:
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * LATENT_CHANNELS,
        num_layers=2,
        num_single_layers=4,
        attention_head_dim=32,
        num_attention_heads=4,
        joint_attention_dim=HIDDEN,
        pooled_projection_dim=HIDDEN,
        guidance_embeds=True,
        axes_dims_rope=(8, 12, 12),
    )

    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(24, 32, 64, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=False,
    )

    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tok),
            hidden_size=HIDDEN,
            intermediate_size=2 * HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=CLIP_MAX_LENGTH,
            projection_dim=HIDDEN,
            hidden_act="quick_gelu",
            bos_token_id=clip_tok.bos_token_id,
            eos_token_id=clip_tok.eos_token_id,
            pad_token_id=clip_tok.pad_token_id,
        )
    )

    torch.manual_seed(seed + 3)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tok),
            d_model=HIDDEN,
            d_kv=8,
            d_ff=2 * HIDDEN,
            num_layers=2,
            num_heads=4,
            feed_forward_proj="gated-gelu",  # T5 v1.1, as FLUX's text_encoder_2
            tie_word_embeddings=False,
            pad_token_id=t5_tok.pad_token_id,
            eos_token_id=t5_tok.eos_token_id,
            decoder_start_token_id=t5_tok.pad_token_id,
        )
    )

    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    return dict(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        scheduler=scheduler,
    )


# --- assembly ------------------------------------------------------------------------


def write_preset(folder: Path, seed: int = DEFAULT_SEED) -> None:
    """Write the whole preset into ``folder`` (which must be empty or not exist)."""
    import diffusers

    lines = corpus_lines()
    clip_tok, clip_vocab, clip_merges = build_clip_tokenizer(lines)
    t5_tok = build_t5_tokenizer(lines)
    models = build_models(clip_tok, t5_tok, seed)

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        models[name].save_pretrained(folder / name, safe_serialization=True)
    models["scheduler"].save_pretrained(folder / "scheduler")
    save_clip_tokenizer(clip_tok, clip_vocab, clip_merges, folder / "tokenizer")
    t5_tok.save_pretrained(folder / "tokenizer_2")

    # Written by hand rather than by FluxPipeline.save_pretrained: transformers 5 names the
    # T5 class "T5Tokenizer" (T5TokenizerFast is an alias of it), which transformers 4
    # would resolve to the sentencepiece tokenizer that needs a spiece.model we do not
    # ship. "T5TokenizerFast" loads tokenizer.json under both, as in FLUX.1-dev.
    index = {
        "_class_name": "FluxPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def build(out: Path, seed: int = DEFAULT_SEED) -> Path:
    """Build the preset in a temporary folder beside ``out``, then swap it into place."""
    return write_atomically(out, lambda folder: write_preset(folder, seed))


def write_atomically(out: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary folder beside ``out``, then swap it into place.

    Readers never see a half-written folder; if ``write`` fails, the previous ``out`` stays.
    Shared with ``build_tiny_vision.py``.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    old = None
    try:
        write(tmp)
        for path in [tmp, *tmp.rglob("*")]:  # mkdtemp makes 0700; ship like any package data
            path.chmod(0o755 if path.is_dir() else 0o644)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            os.rename(out, old)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not out.exists():
            os.rename(old, out)  # put the previous preset back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"target folder (default: {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="torch seed of the random weights")
    args = parser.parse_args(argv)
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    out = build(args.out, args.seed)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
